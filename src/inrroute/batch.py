"""The stages after meta-training over the runs of one job (config key batch_runs).

A job gets several runs, paired by position (the i-th model, fitted file and output are
one run); it loads each run's inputs, calls the stage module's ``run_<stage>``, stamps the
result with what made it (provenance) and writes it atomically, one file per run.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator, Sequence

from . import provenance as prov
from .config import StudyConfig
from .io import open_netcdf, read_netcdf, write_netcdf
from .study import RunStage

log = logging.getLogger("inrroute")


def paired(*lists: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """The runs of a job: the i-th entry of every list, with a log line per run."""
    n = len(lists[-1])
    for i, run in enumerate(zip(*lists, strict=True)):
        if n > 1:
            log.info("run %d of %d -> %s", i + 1, n, run[-1])
        yield run


def device_of(cfg: StudyConfig):
    from .runtime import select_device

    return select_device(cfg.device)


def fit_runs(
    cfg: StudyConfig, models: Sequence[str], data: str, outs: Sequence[str], progress: bool
) -> None:
    """fitted.nc of every run: each model fits the test images and the train sample
    (fit.train_images) of the staged dataset, written batch by batch."""
    import xarray as xr

    from .fitting import write_fitted
    from .model import load_model

    device, staged = device_of(cfg), read_netcdf(data, remedy="Re-run the stage rule.")
    for path, out in paired(models, outs):
        start, model = time.perf_counter(), load_model(path, device)
        inputs = [(path, prov.of_model(model)), (data, prov.of_attrs(staged.attrs))]
        own = prov.rule_values(cfg, "fit")

        def attrs(inputs=inputs, own=own, start=start) -> dict:
            return prov.stamp(xr.Dataset(), "fit", own, inputs, device, start).attrs

        try:
            write_fitted(model, staged, cfg, device, out, attrs, progress)
        except FloatingPointError as exc:
            raise FloatingPointError(
                f"{exc} (model {path}, data {data}); {out} was not written. Check the run's "
                "train_log.csv, then re-run its meta_train rule with a lower training.lr or "
                "model.alpha_init_high."
            ) from exc


def stage_runs(
    stage: RunStage,
    cfg: StudyConfig,
    models: Sequence[str] | None,
    fitteds: Sequence[str],
    outs: Sequence[str],
) -> None:
    """One per-run stage (study.RUN_STAGES) over every run of the job."""
    module = importlib.import_module(f"inrroute.{stage.module}")
    run_stage = getattr(module, f"run_{stage.rule}")
    device = device_of(cfg) if stage.uses_torch else None  # no torch start-up otherwise
    for model_path, fitted_path, out in paired(models or [None] * len(outs), fitteds, outs):
        start = time.perf_counter()
        # opened lazily: each stage reads the split(s) it needs in blocks (io.fitted_split)
        with open_netcdf(fitted_path, remedy="Re-run the fit rule.") as fitted:
            inputs = [(fitted_path, prov.of_attrs(fitted.attrs))]
            model = None
            if stage.needs_model:
                from .model import load_model  # torch: only for the stages that read the model

                model = load_model(model_path, device)
                inputs.append((model_path, prov.of_model(model)))
            ds = run_stage(model, fitted, cfg, device)
        own = prov.rule_values(cfg, stage.rule)
        write_netcdf(prov.stamp(ds, stage.rule, own, inputs, device or "cpu", start), out)
