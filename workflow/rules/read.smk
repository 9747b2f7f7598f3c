# The per-run stages after fitting, one rule each, generated from inrroute.study.RUN_STAGES
# (read, geometry, fresh_reader, tokenflow, interventions): they differ only in name,
# output, inputs, runtime and command. Each job takes the runs of one batch (batch_runs).
for stage in study.RUN_STAGES:

    rule:
        name:
            stage.rule
        input:
            model=batch_files("model.pt") if stage.needs_model else [],
            fitted=batch_files("fitted.nc"),
        output:
            batch_files(stage.output),
        log:
            f"logs/{stage.rule}/{BATCH}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{stage.rule}/{BATCH}.tsv"
        conda:
            ENV
        resources:
            **({"gpu": 1} if stage.gpu else {}),
            **planned(stage.rule),
        params:
            config=config_of(stage.rule),
            # The shell text is evaluated when the job runs, after the loop has moved on,
            # so everything stage-specific reaches it through params.
            command=stage.command,
            model="--model" if stage.needs_model else "",
        shell:
            'exec inrroute {params.command} --config "$INRROUTE_CONFIG"'
            " {params.model} {input.model} --fitted {input.fitted} --out {output}"
            " --threads {threads} > {log} 2>&1"
