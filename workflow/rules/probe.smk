# CPU-only geometry probes of the exposed weights (no reader involved).
rule geometry:
    input:
        batch_files("fitted.nc"),
    output:
        batch_files("geometry.nc"),
    log:
        f"logs/geometry/{BATCH}.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/{BATCH}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=per_job(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute geometry --config {params.config} --fitted {input} --out {output}"
        " --threads {threads} > {log} 2>&1"
