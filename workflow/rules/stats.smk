rule aggregate:
    input:
        [run_files(stage.output) for stage in study.RUN_STAGES],
        run_files("train_log.csv"),
    output:
        f"{RESULTS}/summary.nc",
    log:
        "logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        ENV
    resources:
        **planned("aggregate"),
    params:
        config=config_of("aggregate"),
    shell:
        'exec inrroute aggregate --config "$INRROUTE_CONFIG" --out {output} > {log} 2>&1'


rule stats:
    input:
        f"{RESULTS}/summary.nc",
    output:
        expand(
            f"{RESULTS}/stats/{{table}}.{{ext}}",
            table=study.STATS_TABLES,
            ext=["csv", "nc"],
        ),
        f"{RESULTS}/stats/provenance.json",
    log:
        "logs/stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats.tsv"
    conda:
        ENV
    resources:
        **planned("stats"),
    params:
        config=config_of("stats"),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        'exec inrroute stats --config "$INRROUTE_CONFIG" --summary {input}'
        " --out-dir {params.out_dir} > {log} 2>&1"
