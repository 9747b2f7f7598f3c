# Staging runs where the workflow is launched (login nodes have network; compute
# nodes often do not).
localrules:
    stage,
    stage_all,


rule stage:
    output:
        f"{RESULTS}/data/{{dataset}}.nc",
    log:
        "logs/stage/{dataset}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stage/{{dataset}}.tsv"
    conda:
        ENV
    params:
        config=config_of("stage"),
    shell:
        'exec inrroute stage --config "$INRROUTE_CONFIG" --dataset {wildcards.dataset}'
        " --out {output} > {log} 2>&1"


rule stage_all:
    input:
        expand(f"{RESULTS}/data/{{dataset}}.nc", dataset=DATASETS),
