# Staging runs where the workflow is launched (login nodes have network; compute
# nodes often do not).
localrules:
    stage,
    stage_all,


rule stage:
    output:
        RESULTS + "/data/{dataset}.nc",
    log:
        "logs/stage/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/stage/{dataset}.tsv"
    conda:
        ENV
    shell:
        "inrroute stage --config {RESOLVED_CONFIG} --dataset {wildcards.dataset}"
        " --out {output} > {log} 2>&1"


rule stage_all:
    input:
        expand(RESULTS + "/data/{dataset}.nc", dataset=DATASETS),
