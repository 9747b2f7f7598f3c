rule fit:
    input:
        model=f"{RUN}/model.pt",
        data=f"{RESULTS}/data/{{dataset}}.nc",
    output:
        f"{RUN}/fitted.nc",
    log:
        "logs/fit/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        config=RESOLVED_CONFIG,
    shell:
        "exec inrroute fit --config {params.config} --model {input.model} --data {input.data}"
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"
