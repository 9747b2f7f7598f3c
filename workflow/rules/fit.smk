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
    resources:
        **planned("fit"),
        gpu=1,
    params:
        config=config_of("fit"),
    shell:
        'exec inrroute fit --config "$INRROUTE_CONFIG" --model {input.model} --data {input.data}'
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"
