"""Fit one SIREN per image with a trained model, batched, first-order (DESIGN 2, 8).

``fitted.nc`` holds the read layers' offsets phi as tokens (sample, layer, neuron,
feature) with the bias column last, plus label, split and per-image PSNR.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from .config import StudyConfig
from .data import split_of, to_float
from .io import fitted_split
from .model import MWT, ModelSpec
from .siren import phi_to_tokens, psnr


def fit_batches(
    model: MWT, images: torch.Tensor, batch_size: int, device: torch.device, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (N, depth, width, width + 1) and PSNR (N,) for all images, batch by batch."""
    tokens, scores = [], []
    for start in tqdm(
        range(0, len(images), batch_size), disable=not progress, desc="fit", unit="batch"
    ):
        batch = images[start : start + batch_size].to(device)
        phi, targets = model.fit(batch, create_graph=False)
        if not all(torch.isfinite(p).all() for p in phi):
            raise FloatingPointError(
                f"phi is not finite (NaN/Inf) for images {start}..{start + len(batch) - 1}; "
                "the trained model's inner loop diverges on them"
            )
        with torch.no_grad():
            scores.append(psnr(model.reconstruct(phi), targets).cpu())
        tokens.append(phi_to_tokens(phi, model.depth).cpu())
    return torch.cat(tokens), torch.cat(scores)


def fitted_dataset(
    tokens: torch.Tensor,
    psnrs: torch.Tensor,
    labels: np.ndarray,
    split: np.ndarray,
    spec: ModelSpec,
) -> xr.Dataset:
    _, depth, _, feat = tokens.shape
    return xr.Dataset(
        {
            "phi": (("sample", "layer", "neuron", "feature"), tokens.numpy().astype(np.float32)),
            "label": ("sample", labels.astype(np.int64)),
            "split": ("sample", split.astype(str)),
            "psnr": ("sample", psnrs.numpy().astype(np.float32)),
        },
        coords={"layer": np.arange(1, depth + 1), "feature": np.arange(feat)},
        attrs={
            "model_spec": json.dumps(spec.to_dict(), sort_keys=True),
            "combination": spec.combination,
            "seed": spec.seed,
            "bias_feature": feat - 1,
            "psnr_units": "dB on [0, 1]",
        },
    )


def run_fit(
    model: MWT,
    staged: xr.Dataset,
    cfg: StudyConfig,
    device: torch.device,
    progress: bool = False,
) -> xr.Dataset:
    """fitted.nc of one run: every train and test image of a staged dataset, fitted."""
    images = to_float(staged["images"].values)
    tokens, scores = fit_batches(model, images, cfg.fit.batch_size, device, progress)
    return fitted_dataset(
        tokens, scores, staged["label"].values, staged["split"].values, model.spec
    )


def reconstruct_examples(
    model: MWT, staged: xr.Dataset, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first ``count`` test images, their SIREN fits (both on [0, 1]), labels, PSNR."""
    test = split_of(staged, "test")
    images = test.images[:count]
    phi, targets = model.fit(images, create_graph=False)
    with torch.no_grad():
        pred = model.reconstruct(phi)
        scores = psnr(pred, targets).numpy()
    recon = pred.transpose(1, 2).reshape(images.shape).clamp(-1, 1)
    return (
        ((images + 1) / 2).numpy(),
        ((recon + 1) / 2).numpy(),
        test.labels[:count].numpy(),
        scores,
    )


def tokens_of(fitted: xr.Dataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reader input (n, layer*neuron, feature) and labels of one split of ``fitted.nc``."""
    phi, labels = fitted_split(fitted, split)
    return torch.from_numpy(phi), torch.from_numpy(labels)
