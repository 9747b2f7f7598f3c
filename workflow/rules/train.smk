rule meta_train:
    input:
        data=RESULTS + "/data/{dataset}.nc",
    output:
        model=RUN + "/model.pt",
        log=RUN + "/train_log.csv",
    log:
        "logs/meta_train/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        RESULTS + "/benchmarks/meta_train/{dataset}/seed{seed}/{combo}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=scaled(4000),
        runtime=scaled(60),
    params:
        out_dir=RUN,
    shell:
        "inrroute meta-train --config {RESOLVED_CONFIG} --data {input.data}"
        " --seed {wildcards.seed} --combination {wildcards.combo}"
        " --out-dir {params.out_dir} --threads {threads} --no-progress > {log} 2>&1"
