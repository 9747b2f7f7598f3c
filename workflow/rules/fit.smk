rule fit:
    input:
        model=RUN + "/model.pt",
        data=RESULTS + "/data/{dataset}.nc",
    output:
        RUN + "/fitted.nc",
    log:
        "logs/fit/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/fit/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(30),
    shell:
        "inrroute fit --config {RESOLVED_CONFIG} --model {input.model} --data {input.data}"
        " --out {output} --threads {threads} --no-progress > {log} 2>&1"
