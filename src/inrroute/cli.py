"""Command line: one sub-command per workflow stage (``inrroute <stage> --help``).

Each Snakemake rule calls exactly one of these, so every stage also runs by hand. A command
parses its arguments, calls ``run_<stage>`` (per-run stages: ``study.RUN_STAGES``), stamps
what made the output and writes it atomically; errors.py maps failures to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import plan
from . import provenance as prov
from .config import StudyConfig, load_config
from .errors import exit_code
from .study import FIGURES, RUN_STAGES, STATS_TABLES, RunStage

log = logging.getLogger("inrroute")
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, list]] = {}


def command(name: str, help_text: str, *args: tuple[str, dict]):
    return lambda fn: COMMANDS.setdefault(name, (fn, help_text, list(args)))[0]


def one(flag: str, what: str, **extra) -> tuple[str, dict]:
    return (flag, {"required": True, "help": what, **extra})


# Per-run stages take several runs in one process (the runs of one combination or one
# dataset, config key batch_runs), so a job pays torch's start-up once. The lists pair up
# by position: the i-th --model, --fitted and --out are one run.
def many(flag: str, what: str) -> tuple[str, dict]:
    return (flag, {"required": True, "nargs": "+", "help": f"{what} of each run"})


CONFIG, OUT = one("--config", "study config YAML (validated)"), one("--out", "output file")
SUMMARY, STATS_DIR = one("--summary", "summary.nc"), one("--stats-dir", "statistics folder")
DATA, OUT_DIR = one("--data", "staged dataset .nc"), one("--out-dir", "output folder")
PROGRESS = ("--no-progress", {"action": "store_true", "help": "hide the progress bar"})
PER_RUN = ("model", "fitted", "out")


def _setup(args: argparse.Namespace, torch: bool = True) -> StudyConfig:
    from .runtime import configure_threads

    cfg = load_config(args.config)
    configure_threads(args.threads or cfg.training.threads, torch=torch)
    return cfg


def _read(path: str, rule: str):
    from .io import read_netcdf

    return read_netcdf(path, remedy=f"Re-run the {rule} rule.")


@command("check-config", "validate a config (schema + cross checks), print it resolved", CONFIG)
def cmd_check_config(args):
    import yaml

    print(yaml.safe_dump(load_config(args.config).to_dict(), sort_keys=False))


@command("stage", "stage one dataset -> {dataset}.nc", CONFIG, one("--dataset", "name"), OUT)
def cmd_stage(args):
    from .data import run_stage
    from .io import write_netcdf

    cfg, start = load_config(args.config), time.perf_counter()
    ds = run_stage(args.dataset, cfg)
    own = prov.rule_values(cfg, "stage", args.dataset)
    write_netcdf(prov.stamp(ds, "stage", own, [], start=start), args.out)


@command(
    "meta-train",
    "meta-train theta, alpha and the reader of one run (resumes from checkpoint.pt)",
    CONFIG,
    DATA,
    one("--seed", "seed", type=int),
    one("--combination", "e.g. cluster0_route0_biasroute0_densefit0"),
    one("--out-dir", "run folder: model.pt, train_log.csv, checkpoint.pt"),
    PROGRESS,
)
def cmd_meta_train(args):
    from .batch import device_of
    from .data import split_of
    from .study import Combination
    from .training import meta_train

    cfg, combo = _setup(args), Combination.parse(args.combination)
    staged = _read(args.data, "stage")
    own = prov.rule_values(cfg, "meta_train")
    record = prov.combine(own, [(args.data, prov.of_attrs(staged.attrs))])
    train, device = split_of(staged, "train"), device_of(cfg)
    progress = not args.no_progress
    path = meta_train(cfg, combo, args.seed, train, args.out_dir, device, progress, None, record)
    log.info("model written to %s", path)


@command(
    "fit",
    "fit one SIREN per train and test image with a trained model -> fitted.nc",
    CONFIG,
    many("--model", "trained model.pt"),
    DATA,
    many("--out", "output fitted.nc"),
    PROGRESS,
)
def cmd_fit(args):
    from .batch import fit_runs

    fit_runs(_setup(args), args.model, args.data, args.out, not args.no_progress)


def per_run_command(stage: RunStage) -> None:
    """Register ``inrroute <stage.command>`` over every run it is given."""

    def cmd(args):
        from .batch import stage_runs

        cfg = _setup(args, torch=stage.uses_torch)
        stage_runs(stage, cfg, getattr(args, "model", None), args.fitted, args.out)

    model = [many("--model", "trained model.pt")] if stage.needs_model else []
    fitted, out = many("--fitted", "fitted.nc"), many("--out", f"output {stage.output}")
    command(stage.command, stage.help, CONFIG, *model, fitted, out)(cmd)


for _stage in RUN_STAGES:
    per_run_command(_stage)


@command("aggregate", "gather every run's outputs into summary.nc", CONFIG, OUT)
def cmd_aggregate(args):
    from .io import write_netcdf
    from .summary import run_aggregate

    write_netcdf(run_aggregate(load_config(args.config)), args.out)


@command(
    "pool",
    "summary.nc files of finished studies on different datasets -> one summary.nc "
    "(then stats, figures and findings answer per dataset and pooled)",
    ("--summary", {"required": True, "nargs": "+", "help": "summary.nc of each study"}),
    OUT,
)
def cmd_pool(args):
    from .io import write_netcdf
    from .summary import pool_summaries

    parts = [(path, _read(path, "aggregate")) for path in args.summary]
    write_netcdf(pool_summaries(parts), args.out)


def _tables(stats_dir: str) -> dict:
    from .io import read_csv

    folder, remedy = Path(stats_dir), "Re-run the stats rule."
    return {t: read_csv(folder / f"{t}.csv", remedy=remedy) for t in STATS_TABLES}


@command("stats", "statistics tables -> results/stats/", CONFIG, SUMMARY, OUT_DIR)
def cmd_stats(args):
    from .io import write_text
    from .stats import run_stats, write_tables

    cfg, summary = load_config(args.config), _read(args.summary, "aggregate")
    own = prov.rule_values(cfg, "stats")
    record = prov.combine(own, [(args.summary, prov.of_attrs(summary.attrs))])
    write_tables(run_stats(summary, cfg), args.out_dir)
    write_text(prov.sidecar_text(record, "stats"), Path(args.out_dir) / prov.SIDECAR)


@command("figures", "the study's figures (PNG)", SUMMARY, STATS_DIR, OUT_DIR)
def cmd_figures(args):
    from .figures import run_figures, save_figure

    figures = run_figures(_read(args.summary, "aggregate"), _tables(args.stats_dir))
    for name in FIGURES:
        save_figure(figures[name], Path(args.out_dir) / f"{name}.png")


@command(
    "reconstructions",
    "grid of test images beside their SIREN reconstructions",
    CONFIG,
    one("--model", "trained model.pt"),
    DATA,
    ("--count", {"type": int, "default": 16}),
    OUT,
)
def cmd_reconstructions(args):
    from .figures import reconstructions_figure, save_figure
    from .fitting import reconstruct_examples
    from .model import load_model

    _setup(args)  # threads
    model, staged = load_model(args.model), _read(args.data, "stage")
    images, recon, labels, scores = reconstruct_examples(model, staged, args.count)
    title = (
        f"{staged.attrs['dataset']}: test images and their SIREN fits, "
        f"{model.spec.combination} seed {model.spec.seed}"
    )
    save_figure(reconstructions_figure(images, recon, labels, scores, title), args.out)


@command("findings", "FINDINGS.md from the summary and statistics", CONFIG, SUMMARY, STATS_DIR, OUT)
def cmd_findings(args):
    from .findings import run_findings
    from .io import write_text

    cfg, summary = load_config(args.config), _read(args.summary, "aggregate")
    text = run_findings(summary, _tables(args.stats_dir), cfg)
    write_text(text.rstrip("\n") + "\n\n" + prov.markdown(summary.attrs), args.out)


@command("plan", "jobs, GPU/CPU-hours, peak memory and disk per rule, before running", CONFIG)
def cmd_plan(args):
    print(plan.table(load_config(args.config)))


@command("provenance", "print what made a results file", ("file", {"help": "a results file"}))
def cmd_provenance(args):
    import json

    print(json.dumps(prov.read_record(args.file), indent=2, sort_keys=True, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inrroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_text, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for flag, kwargs in arguments:
            p.add_argument(flag, **kwargs)
        p.add_argument("--threads", type=int, default=None, help="threads (default: job's CPUs)")
        p.set_defaults(func=fn, parser=p)
    args = parser.parse_args(argv)
    lengths = {f"--{k}": len(v) for k in PER_RUN if isinstance(v := getattr(args, k, None), list)}
    if len(set(lengths.values())) > 1:
        given = ", ".join(f"{flag}: {n} files" for flag, n in lengths.items())
        args.parser.error(f"give one file per run to each of {', '.join(lengths)} ({given})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args.func(args)
    except BaseException as exc:
        if (code := exit_code(exc)) is None:
            raise
        # 143: SIGTERM, checkpoint written, re-running resumes
        (log.warning if code == 143 else log.error)("%s", getattr(exc, "message", exc))
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
