rule meta_train:
    input:
        data=f"{RESULTS}/data/{{dataset}}.nc",
    output:
        model=f"{RUN}/model.pt",
        log=f"{RUN}/train_log.csv",
    log:
        "logs/meta_train/{dataset}/seed{seed}/{combo}.log",
    benchmark:
        f"{RESULTS}/benchmarks/meta_train/{{dataset}}/seed{{seed}}/{{combo}}.tsv"
    conda:
        ENV
    resources:
        **planned("meta_train"),
        gpu=1,
    params:
        config=config_of("meta_train"),
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        'exec inrroute meta-train --config "$INRROUTE_CONFIG" --data {input.data}'
        " --seed {wildcards.seed} --combination {wildcards.combo}"
        " --out-dir {params.out_dir} --threads {threads} --no-progress > {log} 2>&1"
