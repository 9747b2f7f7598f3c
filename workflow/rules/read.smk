rule read:
    input:
        model=batch_files("model.pt"),
        fitted=batch_files("fitted.nc"),
    output:
        batch_files("reader.nc"),
    log:
        f"logs/read/{BATCH}.log",
    benchmark:
        f"{RESULTS}/benchmarks/read/{BATCH}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=per_job(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute read --config {params.config} --model {input.model} --fitted {input.fitted}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule fresh_reader:
    input:
        model=batch_files("model.pt"),
        fitted=batch_files("fitted.nc"),
    output:
        batch_files("fresh_reader.nc"),
    log:
        f"logs/fresh_reader/{BATCH}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fresh_reader/{BATCH}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=per_job(60),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute fresh-reader --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule tokenflow:
    input:
        model=batch_files("model.pt"),
        fitted=batch_files("fitted.nc"),
    output:
        batch_files("tokenflow.nc"),
    log:
        f"logs/tokenflow/{BATCH}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenflow/{BATCH}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=per_job(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute tokenflow --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule interventions:
    input:
        model=batch_files("model.pt"),
        fitted=batch_files("fitted.nc"),
    output:
        batch_files("interventions.nc"),
    log:
        f"logs/interventions/{BATCH}.log",
    benchmark:
        f"{RESULTS}/benchmarks/interventions/{BATCH}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=per_job(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute interventions --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"
