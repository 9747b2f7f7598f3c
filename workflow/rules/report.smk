FIGURES = ["tokenflow", "interventions", "interactions", "geometry_vs_accuracy"]
CAPTIONS = "../report/"


rule figures:
    input:
        summary=RESULTS + "/summary.nc",
        stats=rules.stats.output,
    output:
        [
            report(
                RESULTS + f"/figures/{name}.png",
                caption=CAPTIONS + f"{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
    log:
        "logs/figures.log",
    benchmark:
        RESULTS + "/benchmarks/figures.tsv"
    conda:
        ENV
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15),
    params:
        stats_dir=RESULTS + "/stats",
        out_dir=RESULTS + "/figures",
    shell:
        "inrroute figures --config {RESOLVED_CONFIG} --summary {input.summary}"
        " --stats-dir {params.stats_dir} --out-dir {params.out_dir} > {log} 2>&1"


# One reconstruction grid per dataset, from the baseline (or first) combination of the first seed.
rule reconstructions:
    input:
        model=expand(RUN + "/model.pt", seed=SEEDS[0], combo=COMBOS[0], allow_missing=True),
        data=RESULTS + "/data/{dataset}.nc",
    output:
        report(
            RESULTS + "/figures/reconstructions_{dataset}.png",
            caption=CAPTIONS + "reconstructions.rst",
            category="Reconstructions",
        ),
    log:
        "logs/reconstructions/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15),
    shell:
        "inrroute reconstructions --config {RESOLVED_CONFIG} --model {input.model}"
        " --data {input.data} --out {output} > {log} 2>&1"


rule findings:
    input:
        summary=RESULTS + "/summary.nc",
        stats=rules.stats.output,
    output:
        report(RESULTS + "/FINDINGS.md", caption=CAPTIONS + "findings.rst", category="Findings"),
    log:
        "logs/findings.log",
    conda:
        ENV
    params:
        stats_dir=RESULTS + "/stats",
    shell:
        "inrroute findings --config {RESOLVED_CONFIG} --summary {input.summary}"
        " --stats-dir {params.stats_dir} --out {output} > {log} 2>&1"


rule study:
    input:
        rules.figures.output,
        rules.findings.output,
        expand(RESULTS + "/figures/reconstructions_{dataset}.png", dataset=DATASETS),
        [
            report(
                RESULTS + f"/stats/{t}.csv",
                caption=CAPTIONS + "anova.rst",
                category="Tables",
            )
            for t in STATS_TABLES
        ],
