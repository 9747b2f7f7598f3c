rule read:
    input:
        model=seed_files("model.pt"),
        fitted=seed_files("fitted.nc"),
    output:
        seed_files("reader.nc"),
    log:
        "logs/read/{dataset}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/read/{{dataset}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15 * len(SEEDS)),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute read --config {params.config} --model {input.model} --fitted {input.fitted}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule fresh_reader:
    input:
        model=seed_files("model.pt"),
        fitted=seed_files("fitted.nc"),
    output:
        seed_files("fresh_reader.nc"),
    log:
        "logs/fresh_reader/{dataset}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fresh_reader/{{dataset}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(60 * len(SEEDS)),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute fresh-reader --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule tokenflow:
    input:
        model=seed_files("model.pt"),
        fitted=seed_files("fitted.nc"),
    output:
        seed_files("tokenflow.nc"),
    log:
        "logs/tokenflow/{dataset}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenflow/{{dataset}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15 * len(SEEDS)),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute tokenflow --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule interventions:
    input:
        model=seed_files("model.pt"),
        fitted=seed_files("fitted.nc"),
    output:
        seed_files("interventions.nc"),
    log:
        "logs/interventions/{dataset}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/interventions/{{dataset}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15 * len(SEEDS)),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute interventions --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"
