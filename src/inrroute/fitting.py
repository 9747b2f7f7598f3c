"""Fit one SIREN per image with a trained model, batched, first-order (DESIGN 2, 8).

``fitted.nc`` holds the read layers' offsets phi as tokens (sample, layer, neuron,
feature) with the bias column last, plus label, split and per-image PSNR.

At paper scale one run's phi is 70,000 x 512 x 129 numbers, so :func:`write_fitted`
stores phi at half precision, chunked per fit batch and compressed, and writes it batch by
batch: no stage holds a whole split's tokens (README: Storage and memory at paper scale).
netCDF has no 16-bit float, so phi is float32 rounded to float16's 11 significant bits
(netCDF-C's BitRound quantization): the zeroed low bits compress away. Every
test image is fitted; the train images are a stratified sample of ``fit.train_images``
(null = all), which the fresh reader and the geometry probes' train side use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from .config import StudyConfig
from .data import split_of, to_float
from .io import PHI_BITS, atomic_path, fitted_split, stratified_subset
from .model import MWT, ModelSpec
from .siren import phi_to_tokens, psnr


def iter_fit(
    model: MWT,
    images: Callable[[int, int], torch.Tensor] | torch.Tensor,
    n: int,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(start, tokens (b, depth, width, width + 1), PSNR (b,)) per batch of ``n`` images;
    ``images(start, stop)`` gives a batch (float, [-1, 1]), so no caller holds them all."""
    get = images if callable(images) else lambda a, b: images[a:b]
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="fit", unit="batch"):
        batch = get(start, min(start + batch_size, n)).to(device)
        phi, targets = model.fit(batch, create_graph=False)
        if not all(torch.isfinite(p).all() for p in phi):
            raise FloatingPointError(
                f"phi is not finite (NaN/Inf) for images {start}..{start + len(batch) - 1}; "
                "the trained model's inner loop diverges on them"
            )
        with torch.no_grad():
            scores = psnr(model.reconstruct(phi), targets).cpu()
        yield start, phi_to_tokens(phi, model.depth).detach().cpu(), scores


def fit_batches(
    model: MWT, images: torch.Tensor, batch_size: int, device: torch.device, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (N, depth, width, width + 1) and PSNR (N,) for all images, in memory (small
    sets; the fit stage streams with :func:`write_fitted`)."""
    parts = list(iter_fit(model, images, len(images), batch_size, device, progress))
    return torch.cat([t for _, t, _ in parts]), torch.cat([s for _, _, s in parts])


def fitted_dataset(
    tokens: torch.Tensor | None,
    psnrs: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    spec: ModelSpec,
    shape: tuple[int, int, int] | None = None,
) -> xr.Dataset:
    """fitted.nc in memory (small sets); without tokens, everything but phi (the
    skeleton :func:`write_fitted` fills), with ``shape`` = (layer, neuron, feature)."""
    depth, _, feat = tokens.shape[1:] if tokens is not None else shape
    phi = {}
    if tokens is not None:
        phi["phi"] = (("sample", "layer", "neuron", "feature"), tokens.numpy().astype(np.float32))
    return xr.Dataset(
        {
            **phi,
            "label": ("sample", labels.astype(np.int64)),
            "split": ("sample", split.astype(str)),
            "psnr": ("sample", np.asarray(psnrs, dtype=np.float32)),
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


def fitted_samples(staged: xr.Dataset, cfg: StudyConfig) -> np.ndarray:
    """Indices (staged order) of the images a run fits: every test image and a stratified
    sample of ``fit.train_images`` train images (null = all)."""
    split = staged["split"].values
    train = np.flatnonzero(split == "train")
    keep = stratified_subset(staged["label"].values[train], cfg.fit.train_images, cfg.stage_seed)
    return np.sort(np.concatenate([train[keep], np.flatnonzero(split != "train")]))


def write_fitted(
    model: MWT,
    staged: xr.Dataset,
    cfg: StudyConfig,
    device: torch.device,
    out: str | os.PathLike,
    attrs: Callable[[], dict],
    progress: bool = False,
) -> None:
    """fitted.nc of one run, written batch by batch into a chunked, compressed, half-
    precision ``phi``; ``attrs()`` (provenance, called at the end) adds global attributes."""
    import netCDF4

    index = fitted_samples(staged, cfg)
    batch, depth, width = cfg.fit.batch_size, model.depth, model.spec.siren.width
    skeleton = fitted_dataset(
        None,
        np.full(len(index), np.nan, np.float32),
        staged["label"].values[index],
        staged["split"].values[index],
        model.spec,
        (depth, width, width + 1),
    )
    images = staged["images"]

    def load(a: int, b: int) -> torch.Tensor:
        return to_float(images.values[index[a:b]])

    with atomic_path(out) as tmp:
        skeleton.to_netcdf(tmp, engine="netcdf4")
        with netCDF4.Dataset(tmp, "a") as nc:
            nc.createDimension("neuron", width)
            phi = nc.createVariable(
                "phi",
                "f4",
                ("sample", "layer", "neuron", "feature"),
                zlib=True,
                complevel=1,
                shuffle=True,
                chunksizes=(min(batch, len(index)), depth, width, width + 1),
                significant_digits=PHI_BITS,
                quantize_mode="BitRound",
            )
            phi.long_name = "phi tokens: incoming weights of a read-layer neuron, then its bias"
            for start, tokens, scores in iter_fit(model, load, len(index), batch, device, progress):
                phi[start : start + len(tokens)] = tokens.numpy()
                nc["psnr"][start : start + len(tokens)] = scores.numpy()
            nc.setncatts({k: v for k, v in attrs().items()})


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
    """Reader input (n, layer*neuron, feature) and labels of one split of ``fitted.nc``.

    The tokens stay in float16 (half the memory of float32; the reader's input step,
    tokens + its float32 base, promotes each batch to float32)."""
    phi, labels = fitted_split(fitted, split)
    return torch.from_numpy(phi), torch.from_numpy(labels)
