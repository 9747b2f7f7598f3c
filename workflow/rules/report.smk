CAPTIONS = "../report/"


rule figures:
    input:
        summary=f"{RESULTS}/summary.nc",
        stats=rules.stats.output,
    output:
        [
            report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"{CAPTIONS}{name}.rst",
                category="Figures",
            )
            for name in study.FIGURES
        ],
    log:
        "logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        ENV
    resources:
        **planned("figures"),
    params:
        stats_dir=lambda wildcards, input: os.path.dirname(input.stats[0]),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "exec inrroute figures --summary {input.summary}"
        " --stats-dir {params.stats_dir} --out-dir {params.out_dir} > {log} 2>&1"


# One reconstruction grid per dataset, from the baseline (or first) combination of the first seed.
rule reconstructions:
    input:
        model=expand(
            f"{RUN}/model.pt", seed=SEEDS[0], combo=COMBOS[0], allow_missing=True
        ),
        data=f"{RESULTS}/data/{{dataset}}.nc",
    output:
        report(
            f"{RESULTS}/figures/reconstructions_{{dataset}}.png",
            caption=f"{CAPTIONS}reconstructions.rst",
            category="Reconstructions",
        ),
    log:
        "logs/reconstructions/{dataset}.log",
    conda:
        ENV
    resources:
        **planned("reconstructions"),
    params:
        config=config_of("reconstructions"),
    shell:
        'exec inrroute reconstructions --config "$INRROUTE_CONFIG" --model {input.model}'
        " --data {input.data} --out {output} > {log} 2>&1"


rule findings:
    input:
        summary=f"{RESULTS}/summary.nc",
        stats=rules.stats.output,
    output:
        report(
            f"{RESULTS}/FINDINGS.md",
            caption=f"{CAPTIONS}findings.rst",
            category="Findings",
        ),
    log:
        "logs/findings.log",
    conda:
        ENV
    resources:
        **planned("findings"),
    params:
        config=config_of("findings"),
        stats_dir=lambda wildcards, input: os.path.dirname(input.stats[0]),
    shell:
        'exec inrroute findings --config "$INRROUTE_CONFIG" --summary {input.summary}'
        " --stats-dir {params.stats_dir} --out {output} > {log} 2>&1"


rule study:
    input:
        rules.figures.output,
        rules.findings.output,
        expand(f"{RESULTS}/figures/reconstructions_{{dataset}}.png", dataset=DATASETS),
        [
            report(
                f"{RESULTS}/stats/{t}.csv",
                caption=f"{CAPTIONS}anova.rst",
                category="Tables",
            )
            for t in study.STATS_TABLES
        ],
