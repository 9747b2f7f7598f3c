rule fit:
    input:
        model=seed_files("model.pt"),
        data=f"{RESULTS}/data/{{dataset}}.nc",
    output:
        seed_files("fitted.nc"),
    log:
        "logs/fit/{dataset}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{dataset}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(30 * len(SEEDS)),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute fit --config {params.config} --model {input.model} --data {input.data}"
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"
