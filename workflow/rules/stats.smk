rule aggregate:
    input:
        [
            run_files(f)
            for f in (
                "reader.nc",
                "geometry.nc",
                "fresh_reader.nc",
                "tokenflow.nc",
                "interventions.nc",
            )
        ],
    output:
        f"{RESULTS}/summary.nc",
    log:
        "logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        ENV
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute aggregate --config {params.config} --out {output} > {log} 2>&1"


STATS_TABLES = [
    "anova",
    "cluster_effect",
    "geometry_correlation",
    "tokenflow_curve",
    "variants_vs_baseline",
]


rule stats:
    input:
        f"{RESULTS}/summary.nc",
    output:
        expand(
            f"{RESULTS}/stats/{{table}}.{{ext}}", table=STATS_TABLES, ext=["csv", "nc"]
        ),
    log:
        "logs/stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats.tsv"
    conda:
        ENV
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        config=RESOLVED_CONFIG,
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "exec inrroute stats --config {params.config} --summary {input} --out-dir {params.out_dir}"
        " > {log} 2>&1"
