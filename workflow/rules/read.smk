rule read:
    input:
        model=RUN + "/model.pt",
        fitted=RUN + "/fitted.nc",
    output:
        RUN + "/reader.nc",
    log:
        "logs/read/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/read/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15),
    shell:
        "inrroute read --config {RESOLVED_CONFIG} --model {input.model} --fitted {input.fitted}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule fresh_reader:
    input:
        model=RUN + "/model.pt",
        fitted=RUN + "/fitted.nc",
    output:
        RUN + "/fresh_reader.nc",
    log:
        "logs/fresh_reader/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/fresh_reader/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(60),
    shell:
        "inrroute fresh-reader --config {RESOLVED_CONFIG} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule tokenflow:
    input:
        model=RUN + "/model.pt",
        fitted=RUN + "/fitted.nc",
    output:
        RUN + "/tokenflow.nc",
    log:
        "logs/tokenflow/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/tokenflow/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15),
    shell:
        "inrroute tokenflow --config {RESOLVED_CONFIG} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule interventions:
    input:
        model=RUN + "/model.pt",
        fitted=RUN + "/fitted.nc",
    output:
        RUN + "/interventions.nc",
    log:
        "logs/interventions/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/interventions/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15),
    shell:
        "inrroute interventions --config {RESOLVED_CONFIG} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"
