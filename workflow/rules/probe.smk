# CPU-only geometry probes of the exposed weights (no reader involved).
rule geometry:
    input:
        seed_files("fitted.nc"),
    output:
        seed_files("geometry.nc"),
    log:
        "logs/geometry/{dataset}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/{{dataset}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15 * len(SEEDS)),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute geometry --config {params.config} --fitted {input} --out {output}"
        " --threads {threads} > {log} 2>&1"
