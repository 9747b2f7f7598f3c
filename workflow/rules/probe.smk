# CPU-only geometry probes of the exposed weights (no reader involved).
rule geometry:
    input:
        f"{RUN}/fitted.nc",
    output:
        f"{RUN}/geometry.nc",
    log:
        "logs/geometry/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute geometry --config {params.config} --fitted {input} --out {output}"
        " --threads {threads} > {log} 2>&1"
