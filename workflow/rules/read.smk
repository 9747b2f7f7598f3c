rule read:
    input:
        model=f"{RUN}/model.pt",
        fitted=f"{RUN}/fitted.nc",
    output:
        f"{RUN}/reader.nc",
    log:
        "logs/read/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/read/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute read --config {params.config} --model {input.model} --fitted {input.fitted}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule fresh_reader:
    input:
        model=f"{RUN}/model.pt",
        fitted=f"{RUN}/fitted.nc",
    output:
        f"{RUN}/fresh_reader.nc",
    log:
        "logs/fresh_reader/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fresh_reader/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(60),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute fresh-reader --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule tokenflow:
    input:
        model=f"{RUN}/model.pt",
        fitted=f"{RUN}/fitted.nc",
    output:
        f"{RUN}/tokenflow.nc",
    log:
        "logs/tokenflow/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenflow/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute tokenflow --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"


rule interventions:
    input:
        model=f"{RUN}/model.pt",
        fitted=f"{RUN}/fitted.nc",
    output:
        f"{RUN}/interventions.nc",
    log:
        "logs/interventions/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/interventions/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute interventions --config {params.config} --model {input.model}"
        " --fitted {input.fitted} --out {output} --threads {threads} > {log} 2>&1"
