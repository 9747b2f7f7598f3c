rule fit:
    input:
        model=batch_files("model.pt"),
        data=f"{RESULTS}/data/{{dataset}}.nc",
    output:
        batch_files("fitted.nc"),
    log:
        f"logs/fit/{BATCH}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{BATCH}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=per_job(30),
    params:
        config=config_of("fit"),
    shell:
        'exec inrroute fit --config "$INRROUTE_CONFIG" --model {input.model} --data {input.data}'
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"
