"""Command line: one sub-command per workflow stage (``inrroute <stage> --help``).

Each Snakemake rule calls exactly one of these, so every stage also runs by hand.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .config import StudyConfig, load_config
from .errors import exit_code

log = logging.getLogger("inrroute")
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, list]] = {}


def command(name: str, help_text: str, *args: tuple[str, dict]):
    def register(fn):
        COMMANDS[name] = (fn, help_text, list(args))
        return fn

    return register


CONFIG = ("--config", {"required": True, "help": "study config YAML (validated)"})
MODEL = ("--model", {"required": True, "help": "trained model.pt"})
OUT = ("--out", {"required": True, "help": "output file"})
# Per-run stages take several runs in one process (Snakemake gives them the runs of one
# combination or one dataset, config key batch_runs), so a job pays Python's and torch's
# start-up once, not once per run. The lists pair up by position: the i-th --model,
# --fitted and --out are one run.
MODELS = ("--model", {"required": True, "nargs": "+", "help": "trained model.pt of each run"})
FITTEDS = ("--fitted", {"required": True, "nargs": "+", "help": "fitted.nc of each run"})
OUTS = ("--out", {"required": True, "nargs": "+", "help": "output file of each run"})
PER_RUN = ("model", "fitted", "out")
PROGRESS = ("--no-progress", {"action": "store_true", "help": "hide the progress bar"})


def _setup(args: argparse.Namespace, torch: bool = True) -> StudyConfig:
    from .runtime import configure_threads

    cfg = load_config(args.config)
    configure_threads(getattr(args, "threads", None) or cfg.training.threads, torch=torch)
    return cfg


def _per_run_lists(args: argparse.Namespace) -> dict[str, list[str]]:
    """The --model / --fitted / --out lists this command was given."""
    return {k: v for k in PER_RUN if isinstance(v := getattr(args, k, None), list)}


def _runs(args: argparse.Namespace) -> Iterator[argparse.Namespace]:
    """One namespace per run, each with a single --model / --fitted / --out path."""
    lists = _per_run_lists(args)
    n = len(lists["out"])
    for i in range(n):
        run = argparse.Namespace(**{**vars(args), **{k: v[i] for k, v in lists.items()}})
        if n > 1:
            log.info("run %d of %d -> %s", i + 1, n, run.out)
        yield run


def _check_pairing(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    lengths = {f"--{k}": len(v) for k, v in _per_run_lists(args).items()}
    if len(set(lengths.values())) > 1:
        given = ", ".join(f"{flag}: {n} files" for flag, n in lengths.items())
        parser.error(f"give one file per run to each of {', '.join(lengths)} ({given})")


@command(
    "check-config",
    "validate a config (schema + cross checks) and print the resolved values",
    CONFIG,
)
def cmd_check_config(args):
    import yaml

    cfg = load_config(args.config)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


@command(
    "stage",
    "stage one dataset into results/data/{dataset}.nc",
    CONFIG,
    ("--dataset", {"required": True}),
    OUT,
)
def cmd_stage(args):
    from .data import stage
    from .io import write_netcdf

    cfg = load_config(args.config)
    ds = stage(
        args.dataset,
        cfg.data_root,
        cfg.cap(args.dataset, "train"),
        cfg.cap(args.dataset, "test"),
        cfg.stage_seed,
    )
    write_netcdf(ds, args.out)
    log.info("staged %s: %d images -> %s", args.dataset, ds.sizes["sample"], args.out)


def _staged(path: str):
    from .io import read_netcdf

    return read_netcdf(path, remedy="Re-run the stage rule for this dataset.")


def _fitted(path: str):
    from .io import read_netcdf

    return read_netcdf(path, remedy="Re-run the fit rule for this run.")


@command(
    "meta-train",
    "meta-train theta, alpha and the reader of one run (resumes from checkpoint.pt)",
    CONFIG,
    ("--data", {"required": True, "help": "staged dataset .nc"}),
    ("--seed", {"type": int, "required": True}),
    ("--combination", {"required": True, "help": "e.g. cluster0_route0_biasroute0_densefit0"}),
    ("--out-dir", {"required": True, "help": "run folder: model.pt, train_log.csv, checkpoint.pt"}),
    PROGRESS,
)
def cmd_meta_train(args):
    from .config import Combination
    from .data import split_of
    from .runtime import select_device
    from .training import meta_train

    cfg = _setup(args)
    combo = Combination.parse(args.combination)
    train = split_of(_staged(args.data), "train")
    path = meta_train(
        cfg, combo, args.seed, train, args.out_dir, select_device(cfg.device), not args.no_progress
    )
    log.info("model written to %s", path)


@command(
    "fit",
    "fit one SIREN per train and test image with a trained model -> fitted.nc",
    CONFIG,
    MODELS,
    ("--data", {"required": True, "help": "staged dataset .nc"}),
    OUTS,
    PROGRESS,
)
def cmd_fit(args):
    from .fitting import fit_dataset
    from .io import write_netcdf
    from .runtime import select_device
    from .training import load_model

    cfg = _setup(args)
    device = select_device(cfg.device)
    staged = _staged(args.data)
    for run in _runs(args):
        model, meta = load_model(run.model, device)
        try:
            ds = fit_dataset(model, staged, meta, cfg.fit.batch_size, device, not args.no_progress)
        except FloatingPointError as exc:
            raise FloatingPointError(
                f"{exc} (model {run.model}, data {args.data}); {run.out} was not written. "
                "Check the run's train_log.csv, then re-run its meta_train rule with a lower "
                "training.lr or model.alpha_init_high."
            ) from exc
        write_netcdf(ds, run.out)


@command(
    "read",
    "trained-reader accuracy, per class, confusion -> reader.nc",
    CONFIG,
    MODELS,
    FITTEDS,
    OUTS,
)
def cmd_read(args):
    from .io import write_netcdf
    from .reading import accuracy_dataset, predict

    cfg = _setup(args)
    for run in _runs(args):
        device, model, meta, fitted, _, (tokens, labels) = _run_inputs(run, cfg)
        ds = accuracy_dataset(
            predict(model.reader, tokens, device), labels.numpy(), meta["n_classes"]
        )
        ds["psnr"] = (
            (),
            float(fitted["psnr"].values[fitted["split"].values == "test"].mean()),
            {"units": "dB"},
        )
        write_netcdf(ds, run.out)
        log.info("trained-reader test accuracy %.4f", float(ds["accuracy"]))


def _run_inputs(args, cfg):
    from .fitting import tokens_of
    from .runtime import select_device
    from .training import load_model

    device = select_device(cfg.device)
    model, meta = load_model(args.model, device)
    fitted = _fitted(args.fitted)
    return device, model, meta, fitted, tokens_of(fitted, "train"), tokens_of(fitted, "test")


@command("geometry", "geometry probes of the exposed phi -> geometry.nc", CONFIG, FITTEDS, OUTS)
def cmd_geometry(args):
    import xarray as xr

    from .io import fitted_split, write_netcdf
    from .probes import geometry_metrics

    cfg = _setup(args, torch=False)  # numpy and scikit-learn only: no torch start-up
    for run in _runs(args):
        fitted = _fitted(run.fitted)
        (xtr, ytr), (xte, yte) = fitted_split(fitted, "train"), fitted_split(fitted, "test")
        metrics = geometry_metrics(
            xtr.reshape(len(xtr), -1),
            ytr,
            xte.reshape(len(xte), -1),
            yte,
            k=cfg.probes.knn_k,
            seed=int(fitted.attrs["seed"]),
        )
        ds = xr.Dataset({k: ((), v, {"units": "1"}) for k, v in metrics.items()})
        write_netcdf(ds, run.out)


@command(
    "fresh-reader",
    "train a fresh reader on frozen train phi -> fresh_reader.nc",
    CONFIG,
    MODELS,
    FITTEDS,
    OUTS,
)
def cmd_fresh_reader(args):
    from .io import write_netcdf
    from .reading import accuracy_dataset, predict, train_fresh_reader

    cfg = _setup(args)
    for run in _runs(args):
        device, model, meta, _, (xtr, ytr), (xte, yte) = _run_inputs(run, cfg)
        reader = train_fresh_reader(model, cfg, xtr, ytr, meta["seed"], device)
        ds = accuracy_dataset(predict(reader, xte, device), yte.numpy(), meta["n_classes"])
        write_netcdf(ds, run.out)
        log.info("fresh-reader test accuracy %.4f", float(ds["accuracy"]))


@command(
    "tokenflow",
    "kNN consistency at every reader depth -> tokenflow.nc",
    CONFIG,
    MODELS,
    FITTEDS,
    OUTS,
)
def cmd_tokenflow(args):
    from .io import write_netcdf
    from .reading import tokenflow_dataset

    cfg = _setup(args)
    for run in _runs(args):
        device, model, _, _, _, (xte, yte) = _run_inputs(run, cfg)
        ds = tokenflow_dataset(model.reader, xte, yte.numpy(), cfg.probes.knn_k, device)
        write_netcdf(ds, run.out)


@command(
    "interventions",
    "bias-column interventions with controls -> interventions.nc",
    CONFIG,
    MODELS,
    FITTEDS,
    OUTS,
)
def cmd_interventions(args):
    from .interventions import run_interventions
    from .io import write_netcdf

    cfg = _setup(args)
    for run in _runs(args):
        device, model, meta, _, _, (xte, yte) = _run_inputs(run, cfg)
        ds = run_interventions(
            model.reader, xte, yte.numpy(), cfg.probes.intervention_draws, meta["seed"], device
        )
        write_netcdf(ds, run.out)


@command("aggregate", "gather every run's outputs into summary.nc", CONFIG, OUT)
def cmd_aggregate(args):
    from .io import write_netcdf
    from .summary import gather

    cfg = load_config(args.config)
    write_netcdf(gather(cfg), args.out)


@command(
    "stats",
    "ANOVA, correlations, token-flow curve, paired differences -> results/stats/",
    CONFIG,
    ("--summary", {"required": True}),
    ("--out-dir", {"required": True}),
)
def cmd_stats(args):
    from .io import read_netcdf
    from .stats import run_stats, write_tables

    cfg = load_config(args.config)
    ds = read_netcdf(args.summary, remedy="Re-run the aggregate rule.")
    write_tables(run_stats(ds, cfg), args.out_dir)


def _tables(stats_dir: str) -> dict:
    from .io import read_csv
    from .study import STATS_TABLES

    return {
        name: read_csv(Path(stats_dir) / f"{name}.csv", remedy="Re-run the stats rule.")
        for name in STATS_TABLES
    }


@command(
    "figures",
    "token flow, interventions, interactions, geometry-vs-accuracy PNGs",
    CONFIG,
    ("--summary", {"required": True}),
    ("--stats-dir", {"required": True}),
    ("--out-dir", {"required": True}),
)
def cmd_figures(args):
    from .figures import run_figures, save_figure
    from .io import read_netcdf

    ds = read_netcdf(args.summary, remedy="Re-run the aggregate rule.")
    for name, fig in run_figures(ds, _tables(args.stats_dir)).items():
        save_figure(fig, Path(args.out_dir) / f"{name}.png")


@command(
    "reconstructions",
    "grid of test images beside their SIREN reconstructions",
    CONFIG,
    MODEL,
    ("--data", {"required": True}),
    ("--count", {"type": int, "default": 16}),
    OUT,
)
def cmd_reconstructions(args):
    import torch

    from . import figures as F
    from .data import split_of
    from .siren import psnr
    from .training import load_model

    _setup(args)  # threads
    model, meta = load_model(args.model)
    staged = _staged(args.data)
    test = split_of(staged, "test")
    images = test.images[: args.count]
    phi, targets = model.fit(images, create_graph=False)
    with torch.no_grad():
        pred = model.reconstruct(phi)
        scores = psnr(pred, targets).numpy()
    recon = pred.transpose(1, 2).reshape(images.shape).clamp(-1, 1)
    fig = F.reconstructions_figure(
        ((images + 1) / 2).numpy(),
        ((recon + 1) / 2).numpy(),
        test.labels[: args.count].numpy(),
        scores,
        f"{staged.attrs['dataset']}: test images (left) and SIREN fits (right), {meta['combo']} seed {meta['seed']}",
    )
    F.save_figure(fig, args.out)


@command(
    "findings",
    "write FINDINGS.md from the summary and the statistics",
    CONFIG,
    ("--summary", {"required": True}),
    ("--stats-dir", {"required": True}),
    OUT,
)
def cmd_findings(args):
    from .findings import run_findings
    from .io import read_netcdf, write_text

    cfg = load_config(args.config)
    ds = read_netcdf(args.summary, remedy="Re-run the aggregate rule.")
    write_text(run_findings(ds, _tables(args.stats_dir), cfg), args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inrroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_text, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for flag, kwargs in arguments:
            p.add_argument(flag, **kwargs)
        p.add_argument(
            "--threads", type=int, default=None, help="torch threads (default: the job's CPUs)"
        )
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
