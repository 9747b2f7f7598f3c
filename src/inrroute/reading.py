"""What the readers make of the fitted weights: accuracy, token flow, a fresh reader.

Inputs are the tokens of ``fitted.nc`` (see :func:`inrroute.fitting.tokens_of`).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import xarray as xr

from .config import StudyConfig
from .fitting import tokens_of
from .model import MWT
from .reader import Reader
from .readers import build_family
from .study import FRESH_REFERENCE_FAMILY, READER_FAMILIES


@torch.inference_mode()
def predict(
    reader: Reader, tokens: torch.Tensor, device: torch.device, batch: int = 1024
) -> np.ndarray:
    reader.eval()
    out = [
        reader(tokens[i : i + batch].to(device)).argmax(1).cpu()
        for i in range(0, len(tokens), batch)
    ]
    return torch.cat(out).numpy()


def accuracy_dataset(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> xr.Dataset:
    """reader.nc: accuracy, per-class accuracy, confusion matrix (rows: true class)."""
    conf = np.bincount(labels * n_classes + pred, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )
    per_class = np.divide(
        conf.diagonal(), conf.sum(1), out=np.full(n_classes, np.nan), where=conf.sum(1) > 0
    )
    return xr.Dataset(
        {
            "accuracy": (
                (),
                float((pred == labels).mean()),
                {"units": "1", "long_name": "test accuracy of the trained reader"},
            ),
            "per_class_accuracy": ("class", per_class, {"units": "1"}),
            "confusion": (
                ("true_class", "predicted_class"),
                conf,
                {"long_name": "test confusion counts"},
            ),
        },
        coords={
            "class": np.arange(n_classes),
            "true_class": np.arange(n_classes),
            "predicted_class": np.arange(n_classes),
        },
    )


def tokenflow_dataset(
    reader: Reader, tokens: torch.Tensor, labels: np.ndarray, k: int, device: torch.device
) -> xr.Dataset:
    """kNN class consistency of the pooled representation at every reader depth."""
    from .probes import knn_consistency  # scikit-learn: imported only by the stage that needs it

    reader.eval()
    reps = [[] for _ in reader.depth_names()]
    for i in range(0, len(tokens), 1024):
        for slot, rep in zip(
            reps, reader.depth_representations(tokens[i : i + 1024].to(device)), strict=True
        ):
            slot.append(rep.float().cpu())
    values = [knn_consistency(torch.cat(r).numpy(), labels, k=k) for r in reps]
    return xr.Dataset(
        {
            "knn_consistency": (
                "depth",
                np.array(values),
                {
                    "units": "1",
                    "long_name": f"kNN class consistency (k={k}, cosine) of the pooled representation",
                },
            )
        },
        coords={"depth": reader.depth_names(), "depth_index": ("depth", np.arange(len(values)))},
    )


def train_fresh_reader(
    model: MWT,
    cfg: StudyConfig,
    train_tokens: torch.Tensor,
    train_labels: torch.Tensor,
    seed: int,
    device: torch.device,
    family: str = FRESH_REFERENCE_FAMILY,
) -> torch.nn.Module:
    """A fresh reader of ``family`` (inrroute.readers) trained on frozen phi (no
    co-adaptation), with the trained reader's budget rule: ``cfg.fresh_reader_epochs()``
    epochs, its batch size, learning rate, weight decay, one-cycle schedule and clipping.

    The ``transformer`` family is the trained reader's architecture (its saved spec, unless
    config key ``probes.fresh_reader_spec`` is ``config``); every family's architecture
    follows the same reader config. Each family has its own init and batch-order seed;
    the transformer's is the one fresh readers always had.
    """
    offset = 7919 * (1 + READER_FAMILIES.index(family)) if family in READER_FAMILIES else 7919
    gen = torch.Generator().manual_seed(seed + offset)
    reader_cfg = cfg.reader if cfg.probes.fresh_reader_spec == "config" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + offset)
        reader = build_family(family, model.spec, reader_cfg, train_tokens).to(device)
    t = cfg.training
    epochs = cfg.fresh_reader_epochs()
    steps = epochs * math.ceil(len(train_tokens) / t.batch_size)
    opt = torch.optim.AdamW(reader.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=steps)
    x, y = train_tokens.to(device), train_labels.to(device)
    reader.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), t.batch_size):
            idx = order[i : i + t.batch_size]
            loss = F.cross_entropy(reader(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reader.parameters(), t.grad_clip)
            opt.step()
            sched.step()
    return reader.eval()


def family_dataset(
    model: MWT,
    cfg: StudyConfig,
    family: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> xr.Dataset:
    """One fresh reader family: accuracy, per class, confusion; bias-column interventions
    with controls (the trained reader's draws and permutations); kNN consistency per depth."""
    from .interventions import intervention_dataset  # imports this module

    start = time.perf_counter()
    reader = train_fresh_reader(model, cfg, *train, model.spec.seed, device, family)
    seconds = time.perf_counter() - start
    xte, labels = test[0], test[1].numpy()
    ds = accuracy_dataset(predict(reader, xte, device), labels, model.spec.n_classes)
    interv = intervention_dataset(
        reader, xte, labels, cfg.probes.intervention_draws, model.spec.seed, device
    )
    ds["intervention_accuracy"] = interv["accuracy"].assign_attrs(
        long_name="fresh-reader test accuracy under the intervention"
    )
    ds["control_accuracy"] = interv["control_accuracy"]
    ds["control_column"] = interv["control_column"]
    flow = tokenflow_dataset(reader, xte, labels, cfg.probes.knn_k, device)
    names = [str(n) for n in flow["depth"].values]
    ds["tokenflow_consistency"] = ("reader_depth", flow["knn_consistency"].values)
    ds["reader_depth_name"] = ("reader_depth", np.array(names, dtype=object))
    ds["n_parameters"] = ((), sum(p.numel() for p in reader.parameters() if p.requires_grad))
    # seconds go to the job's log, not the file, so its content is reproducible
    print(
        f"fresh reader {family}: {ds['n_parameters'].item()} parameters, trained in "
        f"{seconds:.2f} s, test accuracy {float(ds['accuracy']):.4f}",
        file=sys.stderr,
        flush=True,
    )
    return ds.assign_coords(intervention=interv["intervention"], control=interv["control"])


# ---------------------------------------------------------------- stages (one run each)


def run_read(model: MWT, fitted: xr.Dataset, cfg: StudyConfig, device: torch.device) -> xr.Dataset:
    """reader.nc: the trained reader on the test split, and the fits' mean test PSNR."""
    tokens, labels = tokens_of(fitted, "test")
    ds = accuracy_dataset(
        predict(model.reader, tokens, device), labels.numpy(), model.spec.n_classes
    )
    test = fitted["split"].values == "test"
    ds["psnr"] = ((), float(fitted["psnr"].values[test].mean()), {"units": "dB"})
    return ds


def run_fresh_reader(
    model: MWT, fitted: xr.Dataset, cfg: StudyConfig, device: torch.device
) -> xr.Dataset:
    """fresh_reader.nc: fresh readers of every family in ``probes.reader_families``
    trained on frozen train phi, scored on test, with the bias-column interventions and
    the token-flow probe applied to each (dimension ``reader_family``)."""
    train, test = tokens_of(fitted, "train"), tokens_of(fitted, "test")
    families = list(cfg.probes.reader_families)
    parts = [family_dataset(model, cfg, f, train, test, device) for f in families]
    depth = max(p.sizes["reader_depth"] for p in parts)
    parts = [p.assign_coords(reader_depth=np.arange(p.sizes["reader_depth"])) for p in parts]
    parts = [
        p.reindex(reader_depth=np.arange(depth)).assign(
            reader_depth_name=p["reader_depth_name"]
            .reindex(reader_depth=np.arange(depth))
            .fillna("")
            .astype(str)
        )
        for p in parts
    ]
    ds = xr.concat(parts, dim=pd.Index(families, name="reader_family"), coords="minimal")
    ds["accuracy"].attrs.update(
        units="1", long_name="test accuracy of a fresh reader trained on frozen train phi"
    )
    ds["tokenflow_consistency"].attrs.update(
        units="1",
        long_name=f"kNN class consistency (k={cfg.probes.knn_k}, cosine) of the fresh reader's "
        "representation per depth (reader_depth_name; 0 is its input)",
    )
    return ds


def run_tokenflow(
    model: MWT, fitted: xr.Dataset, cfg: StudyConfig, device: torch.device
) -> xr.Dataset:
    """tokenflow.nc: kNN consistency of the trained reader's representation per depth."""
    tokens, labels = tokens_of(fitted, "test")
    return tokenflow_dataset(model.reader, tokens, labels.numpy(), cfg.probes.knn_k, device)
