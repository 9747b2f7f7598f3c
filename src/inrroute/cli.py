"""Command line: one sub-command per workflow stage (``inrroute <stage> --help``).

Each Snakemake rule calls exactly one of these, so every stage also runs by hand. A
command parses its arguments, calls the stage module's ``run_<stage>``, stamps what made
the output (provenance) and writes it atomically; errors.py maps expected failures to exit
codes. The per-run stages after fitting are generated from ``study.RUN_STAGES``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import provenance as prov
from .config import StudyConfig, load_config
from .errors import exit_code
from .study import FIGURES, RUN_STAGES, STATS_TABLES, RunStage

log = logging.getLogger("inrroute")
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, list]] = {}


def command(name: str, help_text: str, *args: tuple[str, dict]):
    def register(fn):
        COMMANDS[name] = (fn, help_text, list(args))
        return fn

    return register


def many(flag: str, what: str) -> tuple[str, dict]:
    # Per-run stages take several runs in one process (Snakemake gives them the runs of one
    # combination or one dataset, config key batch_runs), so a job pays torch's start-up
    # once. The lists pair up by position: the i-th --model, --fitted and --out are one run.
    return (flag, {"required": True, "nargs": "+", "help": f"{what} of each run"})


def one(flag: str, what: str, **extra) -> tuple[str, dict]:
    return (flag, {"required": True, "help": what, **extra})


CONFIG = one("--config", "study config YAML (validated)")
OUT = one("--out", "output file")
SUMMARY = one("--summary", "results/summary.nc")
STATS_DIR = one("--stats-dir", "folder of the statistics tables")
PROGRESS = ("--no-progress", {"action": "store_true", "help": "hide the progress bar"})
PER_RUN = ("model", "fitted", "out")


def _setup(args: argparse.Namespace, torch: bool = True) -> StudyConfig:
    from .runtime import configure_threads

    cfg = load_config(args.config)
    configure_threads(args.threads or cfg.training.threads, torch=torch)
    return cfg


def _runs(args: argparse.Namespace) -> Iterator[argparse.Namespace]:
    """One namespace per run, each with a single --model / --fitted / --out path."""
    lists = {k: v for k in PER_RUN if isinstance(v := getattr(args, k, None), list)}
    n = len(lists["out"])
    for i in range(n):
        run = argparse.Namespace(**{**vars(args), **{k: v[i] for k, v in lists.items()}})
        if n > 1:
            log.info("run %d of %d -> %s", i + 1, n, run.out)
        yield run


def _check_pairing(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    lengths = {f"--{k}": len(v) for k in PER_RUN if isinstance(v := getattr(args, k, None), list)}
    if len(set(lengths.values())) > 1:
        given = ", ".join(f"{flag}: {n} files" for flag, n in lengths.items())
        parser.error(f"give one file per run to each of {', '.join(lengths)} ({given})")


def _read(path: str, rule: str):
    from .io import read_netcdf

    return read_netcdf(path, remedy=f"Re-run the {rule} rule.")


def _write(ds, path: str, rule: str, own: dict, inputs: list, device=None, start=None) -> None:
    """Stamp ``ds`` with what made it (its config keys + its inputs' records), write it."""
    from .io import write_netcdf

    values = prov.combine(own, inputs)
    seconds = time.perf_counter() - start if start is not None else None
    ds.attrs.update(prov.netcdf_attrs(values, rule, device and str(device), seconds))
    write_netcdf(ds, path)


@command("check-config", "validate a config (schema + cross checks), print it resolved", CONFIG)
def cmd_check_config(args):
    import yaml

    print(yaml.safe_dump(load_config(args.config).to_dict(), sort_keys=False))


@command(
    "stage", "stage one dataset -> results/data/{dataset}.nc", CONFIG, one("--dataset", "name"), OUT
)
def cmd_stage(args):
    from .data import run_stage

    cfg, start = load_config(args.config), time.perf_counter()
    own = prov.rule_values(cfg, "stage", args.dataset)
    _write(run_stage(args.dataset, cfg), args.out, "stage", own, [], start=start)


@command(
    "meta-train",
    "meta-train theta, alpha and the reader of one run (resumes from checkpoint.pt)",
    CONFIG,
    one("--data", "staged dataset .nc"),
    one("--seed", "seed", type=int),
    one("--combination", "e.g. cluster0_route0_biasroute0_densefit0"),
    one("--out-dir", "run folder: model.pt, train_log.csv, checkpoint.pt"),
    PROGRESS,
)
def cmd_meta_train(args):
    from .data import split_of
    from .runtime import select_device
    from .study import Combination
    from .training import meta_train

    cfg = _setup(args)
    combo = Combination.parse(args.combination)
    staged = _read(args.data, "stage")
    record = prov.combine(
        prov.rule_values(cfg, "meta_train"), [(args.data, prov.of_attrs(staged.attrs))]
    )
    train, device = split_of(staged, "train"), select_device(cfg.device)
    path = meta_train(
        cfg, combo, args.seed, train, args.out_dir, device, not args.no_progress, None, record
    )
    log.info("model written to %s", path)


def _model(path: str, device):
    """A trained model and its config record (without its own device and seconds)."""
    from .model import load_model

    model = load_model(path, device)
    return model, {k: v for k, v in model.provenance.items() if not k.startswith("inrroute_")}


@command(
    "fit",
    "fit one SIREN per train and test image with a trained model -> fitted.nc",
    CONFIG,
    many("--model", "trained model.pt"),
    one("--data", "staged dataset .nc"),
    many("--out", "output fitted.nc"),
    PROGRESS,
)
def cmd_fit(args):
    from .fitting import run_fit
    from .runtime import select_device

    cfg = _setup(args)
    device, staged = select_device(cfg.device), _read(args.data, "stage")
    for run in _runs(args):
        start = time.perf_counter()
        model, record = _model(run.model, device)
        try:
            ds = run_fit(model, staged, cfg, device, not args.no_progress)
        except FloatingPointError as exc:
            raise FloatingPointError(
                f"{exc} (model {run.model}, data {args.data}); {run.out} was not written. "
                "Check the run's train_log.csv, then re-run its meta_train rule with a lower "
                "training.lr or model.alpha_init_high."
            ) from exc
        inputs = [(run.model, record), (args.data, prov.of_attrs(staged.attrs))]
        _write(ds, run.out, "fit", prov.rule_values(cfg, "fit"), inputs, device, start)


def per_run_command(stage: RunStage) -> None:
    """Register ``inrroute <stage.command>``: run_<rule> over every given run."""
    flags = [many("--model", "trained model.pt")] if stage.needs_model else []

    def cmd(args):
        uses_torch = stage.needs_model or stage.gpu
        cfg = _setup(args, torch=uses_torch)
        run_stage = getattr(
            importlib.import_module(f"inrroute.{stage.module}"), f"run_{stage.rule}"
        )
        device = None
        if uses_torch:
            from .runtime import select_device

            device = select_device(cfg.device)
        for run in _runs(args):
            start = time.perf_counter()
            model, record = _model(run.model, device) if stage.needs_model else (None, {})
            fitted = _read(run.fitted, "fit")
            inputs = [(run.fitted, prov.of_attrs(fitted.attrs))]
            inputs += [(run.model, record)] if stage.needs_model else []
            ds = run_stage(model, fitted, cfg, device)
            own = prov.rule_values(cfg, stage.rule)
            _write(ds, run.out, stage.rule, own, inputs, device or "cpu", start)

    command(
        stage.command,
        stage.help,
        CONFIG,
        *flags,
        many("--fitted", "fitted.nc"),
        many("--out", f"output {stage.output}"),
    )(cmd)


for _stage in RUN_STAGES:
    per_run_command(_stage)


@command("aggregate", "gather every run's outputs into summary.nc", CONFIG, OUT)
def cmd_aggregate(args):
    from .io import write_netcdf
    from .summary import run_aggregate

    write_netcdf(run_aggregate(load_config(args.config)), args.out)


def _tables(stats_dir: str) -> dict:
    from .io import read_csv

    return {
        name: read_csv(Path(stats_dir) / f"{name}.csv", remedy="Re-run the stats rule.")
        for name in STATS_TABLES
    }


@command(
    "stats", "statistics tables -> results/stats/", CONFIG, SUMMARY, one("--out-dir", "folder")
)
def cmd_stats(args):
    from .stats import run_stats, write_tables

    cfg, summary = load_config(args.config), _read(args.summary, "aggregate")
    record = prov.combine(
        prov.rule_values(cfg, "stats"), [(args.summary, prov.of_attrs(summary.attrs))]
    )
    write_tables(run_stats(summary, cfg), args.out_dir)
    _write_sidecar(record, "stats", args.out_dir)


def _write_sidecar(record: dict, rule: str, folder: str) -> None:
    """provenance.json beside CSV tables, which have no attributes of their own."""
    import json

    from .io import write_text

    stamp = prov.netcdf_attrs(record, rule)
    stamp[prov.CONFIG_ATTR] = record
    write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", Path(folder) / prov.SIDECAR)


@command(
    "figures",
    "token flow, interventions, interactions, geometry PNGs",
    SUMMARY,
    STATS_DIR,
    one("--out-dir", "folder"),
)
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
    one("--data", "staged dataset .nc"),
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
        f"{staged.attrs['dataset']}: test images (left) and SIREN fits (right), "
        f"{model.spec.combination} seed {model.spec.seed}"
    )
    save_figure(reconstructions_figure(images, recon, labels, scores, title), args.out)


@command(
    "findings",
    "write FINDINGS.md from the summary and the statistics",
    CONFIG,
    SUMMARY,
    STATS_DIR,
    OUT,
)
def cmd_findings(args):
    from .findings import run_findings
    from .io import write_text

    cfg, summary = load_config(args.config), _read(args.summary, "aggregate")
    text = run_findings(summary, _tables(args.stats_dir), cfg)
    write_text(text.rstrip("\n") + "\n\n" + prov.markdown(summary.attrs), args.out)


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
    _check_pairing(args, args.parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args.func(args)
    except BaseException as exc:
        code = exit_code(exc)
        if code is None:
            raise
        if code == 143:  # SIGTERM: checkpoint written; re-running resumes
            log.warning("%s", exc.message)
        else:
            log.error("%s", exc)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
