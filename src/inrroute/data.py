"""Dataset staging: real image sets into one netCDF file per dataset (DESIGN section 6).

``results/data/{dataset}.nc`` holds ``images`` uint8 (sample, channel, y, x), ``label``
and ``split`` ("train" / "test"). Staging runs on a login node (it may download); every
later stage reads only that file.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .config import StudyConfig
from .errors import ConfigError, DataUnavailableError
from .study import DATASETS as _DATASETS

DATASETS = tuple(_DATASETS)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class RawSplit:
    images: np.ndarray  # uint8 (n, c, h, w)
    labels: np.ndarray  # int64 (n,)


def load_digits_raw(seed: int) -> tuple[RawSplit, RawSplit]:
    """scikit-learn's bundled 8x8 digits, stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # The pixel values are 0..16; rescale to the 0..255 of every other set.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    idx_tr, idx_te = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=seed
    )
    return RawSplit(images[idx_tr], labels[idx_tr]), RawSplit(images[idx_te], labels[idx_te])


def _from_torchvision(ds) -> RawSplit:
    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    if data.ndim == 3:  # (n, h, w) grey
        data = data[:, None]
    else:  # CIFAR: (n, h, w, c)
        data = data.transpose(0, 3, 1, 2)
    return RawSplit(np.ascontiguousarray(data, dtype=np.uint8), np.asarray(ds.targets, np.int64))


def _link_debian_fashion_mnist(root: Path) -> bool:
    """Expose Debian's dataset-fashion-mnist files where torchvision looks for them."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        return False
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    # Debian recompresses the files (their .gz checksums differ from torchvision's), so
    # unpack them: torchvision then finds the raw files and never downloads.
    for src in DEBIAN_FASHION_MNIST.glob("*-ubyte.gz"):
        dst = raw / src.name.removesuffix(".gz")
        if not dst.exists():
            with gzip.open(src, "rb") as fin, open(dst.with_suffix(".part"), "wb") as fout:
                shutil.copyfileobj(fin, fout)
            dst.with_suffix(".part").rename(dst)
    return True


def load_torchvision_raw(name: str, root: str | os.PathLike) -> tuple[RawSplit, RawSplit]:
    """Fashion-MNIST, MNIST or CIFAR-10 through torchvision (downloads if needed)."""
    from torchvision import datasets as tvd

    root = Path(root)
    cls = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    if name == "fashion_mnist":
        _link_debian_fashion_mnist(root)
    try:
        # With the Debian files in place torchvision's checksum check passes and it
        # only extracts; otherwise this downloads.
        train = cls(root, train=True, download=True)
        test = cls(root, train=False, download=True)
    except Exception as exc:
        hint = (
            f"apt-get install dataset-fashion-mnist (files under {DEBIAN_FASHION_MNIST}), or "
            if name == "fashion_mnist"
            else ""
        )
        raise DataUnavailableError(
            f"dataset {name!r} is not staged and could not be read or downloaded into "
            f"{root} ({type(exc).__name__}: {exc}). To stage it: {hint}on a login node "
            f"with network access run `snakemake stage_all --configfile <your config>` (or "
            f"`inrroute stage --config <your config> --dataset {name} --out "
            f"<results_dir>/data/{name}.nc`), then start the rest of the workflow; or copy "
            f"torchvision's {name} files into {root} (config key data_root)."
        ) from exc
    return _from_torchvision(train), _from_torchvision(test)


def stratified_cap(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified subset of at most ``cap`` samples (sorted), reproducible."""
    from sklearn.model_selection import train_test_split  # here: it costs seconds to import

    n = len(labels)
    if cap is None or cap >= n:
        if cap is not None and cap > n:
            raise ValueError(f"cap {cap} is larger than the split's {n} images")
        return np.arange(n)
    idx, _ = train_test_split(np.arange(n), train_size=cap, stratify=labels, random_state=seed)
    return np.sort(idx)


def stage(
    name: str,
    data_root: str | os.PathLike,
    cap_train: int | None,
    cap_test: int | None,
    seed: int,
) -> xr.Dataset:
    """Load a dataset, apply the stratified caps, return the staged Dataset."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {DATASETS}")
    if name == "digits":
        train, test = load_digits_raw(seed)
    else:
        train, test = load_torchvision_raw(name, data_root)
    parts = []
    for split, raw, cap in (("train", train, cap_train), ("test", test, cap_test)):
        try:
            keep = stratified_cap(raw.labels, cap, seed)
        except ValueError as exc:
            raise ConfigError(f"caps.{name}.{split}: {exc}") from exc
        parts.append((split, raw.images[keep], raw.labels[keep]))
    images = np.concatenate([p[1] for p in parts])
    return xr.Dataset(
        {
            "images": (("sample", "channel", "y", "x"), images),
            "label": ("sample", np.concatenate([p[2] for p in parts])),
            "split": ("sample", np.concatenate([[p[0]] * len(p[2]) for p in parts])),
        },
        attrs={"dataset": name, "stage_seed": seed, "n_classes": 10},
    )


def run_stage(name: str, cfg: StudyConfig) -> xr.Dataset:
    """results/data/{name}.nc: the dataset with the config's caps applied."""
    return stage(name, cfg.data_root, cfg.cap(name, "train"), cfg.cap(name, "test"), cfg.stage_seed)


@dataclass(frozen=True)
class ImageSet:
    """Staged images as float tensors in [-1, 1] with labels, one split."""

    images: torch.Tensor  # (n, c, h, w) float32 in [-1, 1]
    labels: torch.Tensor  # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)


def split_of(staged: xr.Dataset, split: str) -> ImageSet:
    mask = staged["split"].values == split
    if not mask.any():
        raise ValueError(f"the staged {staged.attrs.get('dataset')} set has no {split!r} split")
    return ImageSet(
        to_float(staged["images"].values[mask]), torch.from_numpy(staged["label"].values[mask])
    )


def validation_split(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(fit, validation): a stratified ``fraction`` of a train split held out for model
    selection, so sizes, epochs and learning rates are never chosen on the test split."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction {fraction}: expected a number in (0, 1)")
    labels = train.labels.numpy()
    fit_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
    )
    fit_idx, val_idx = np.sort(fit_idx), np.sort(val_idx)
    return (
        ImageSet(train.images[fit_idx], train.labels[fit_idx]),
        ImageSet(train.images[val_idx], train.labels[val_idx]),
    )


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 images -> float32 tensor in [-1, 1] (the SIREN's pixel targets)."""
    return torch.from_numpy(images.astype(np.float32)) / 127.5 - 1.0
