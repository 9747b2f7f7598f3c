# CPU-only geometry probes of the exposed weights (no reader involved).
rule geometry:
    input:
        RUN + "/fitted.nc",
    output:
        RUN + "/geometry.nc",
    log:
        "logs/geometry/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/geometry/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(15),
    shell:
        "inrroute geometry --config {RESOLVED_CONFIG} --fitted {input} --out {output}"
        " --threads {threads} > {log} 2>&1"
