rule aggregate:
    input:
        [run_files(f) for f in ("reader.nc", "geometry.nc", "fresh_reader.nc", "tokenflow.nc", "interventions.nc")],
    output:
        RESULTS + "/summary.nc",
    log:
        "logs/aggregate.log",
    benchmark:
        RESULTS + "/benchmarks/aggregate.tsv"
    conda:
        ENV
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15),
    shell:
        "inrroute aggregate --config {RESOLVED_CONFIG} --out {output} > {log} 2>&1"


STATS_TABLES = ["anova", "cluster_effect", "geometry_correlation", "tokenflow_curve", "variants_vs_baseline"]


rule stats:
    input:
        RESULTS + "/summary.nc",
    output:
        expand(RESULTS + "/stats/{table}.{ext}", table=STATS_TABLES, ext=["csv", "nc"]),
    log:
        "logs/stats.log",
    benchmark:
        RESULTS + "/benchmarks/stats.tsv"
    conda:
        ENV
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        out_dir=RESULTS + "/stats",
    shell:
        "inrroute stats --config {RESOLVED_CONFIG} --summary {input} --out-dir {params.out_dir}"
        " > {log} 2>&1"
