"""Reading and writing results: atomic writes and clear errors on damaged inputs.

Every file a command produces is written to a unique temporary name beside its final
path and renamed into place only when complete, so a killed job never leaves a truncated
``.nc``, ``.pt`` or ``.csv`` where Snakemake (or a later stage) would trust it.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    The temporary name carries the pid and a random suffix, so two jobs writing into the
    same folder (two seeds of one dataset) never share one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to {tmp} for {final}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temps(folder: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete temporaries ``.{name}.*.tmp`` that a killed writer left in ``folder``.

    Only for a folder one job owns (a run folder: Snakemake runs one job per output), so
    no live writer's temporary is removed. Returns the removed paths.
    """
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")


def _read_checked(
    path: str | os.PathLike, kind: str, load: Callable[[Path], Any], remedy: str
) -> Any:
    """Run ``load(path)``; a missing or damaged file becomes one InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist. {remedy}".strip())
    try:
        return load(path)
    except Exception as exc:  # each format raises many types for damaged files
        raise InputError(
            f"{path} is truncated or not a valid {kind} ({type(exc).__name__}: {exc}). "
            f"Delete it and re-run the step that makes it. {remedy}".strip()
        ) from exc


def _load_netcdf(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def read_netcdf(path: str | os.PathLike, remedy: str = "") -> xr.Dataset:
    """Load a netCDF file fully into memory, or raise InputError naming the file."""
    return _read_checked(path, "netCDF file", _load_netcdf, remedy)


def open_netcdf(path: str | os.PathLike, remedy: str = "") -> xr.Dataset:
    """Open a netCDF file lazily (nothing loaded until read; close it after use), or raise
    InputError naming the file. For fitted.nc, whose phi is read split by split in blocks."""

    def load(p: Path) -> xr.Dataset:
        ds = xr.open_dataset(p, engine="netcdf4", cache=False)
        ds["split"].values  # noqa: B018 -- a damaged file fails here, not in a stage
        return ds

    return _read_checked(path, "netCDF file", load, remedy)


def read_netcdf_attrs(path: str | os.PathLike, remedy: str = "") -> dict[str, Any]:
    """The global attributes of a netCDF file, without loading its data."""

    def load(p: Path) -> dict[str, Any]:
        with xr.open_dataset(p, engine="netcdf4") as ds:
            return dict(ds.attrs)

    return _read_checked(path, "netCDF file", load, remedy)


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_csv(path: str | os.PathLike, remedy: str = "") -> pd.DataFrame:
    """Load a CSV table, or raise InputError naming the file."""
    return _read_checked(path, "CSV file", pd.read_csv, remedy)


# fitted.nc stores phi at half precision: float32 bit-rounded to PHI_BITS explicit
# mantissa bits (float16's), which zlib compresses; stages hold it as float16 in memory
# (README: Storage and memory at paper scale).
PHI_BITS = 10
PHI_DTYPE = np.float16
READ_BLOCK = 1024  # samples read from fitted.nc at once (~135 MB at paper size)


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a stratified sample of ``n`` of ``labels`` (all when n is None or
    not below their count); reproducible for a seed."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split  # here: it costs seconds to import

    idx, _ = train_test_split(
        np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed
    )
    return np.sort(idx)


def fitted_split(
    fitted: xr.Dataset,
    split: str,
    sample: int | None = None,
    seed: int = 0,
    dtype: type = PHI_DTYPE,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (n, layer * neuron, feature) and labels of one split of ``fitted.nc``.

    ``sample``: a stratified sample of that many (None = the whole split). phi is read in
    blocks of whole chunks, so a lazily opened file (io.open_netcdf) never loads more than
    the result plus one block; the result is ``dtype`` (float16 as stored by default).
    """
    index = np.flatnonzero(fitted["split"].values == split)
    labels = fitted["label"].values[index]
    keep = stratified_subset(labels, sample, seed)
    index, labels = index[keep], labels[keep]
    phi = fitted["phi"]
    chunk = (phi.encoding.get("chunksizes") or (READ_BLOCK,))[0]
    block = chunk * -(-READ_BLOCK // chunk)
    out = np.empty((len(index), math.prod(phi.shape[1:-1]), phi.shape[-1]), dtype)
    done = 0
    first = index[0] // block * block if len(index) else 0
    for lo in range(first, index[-1] + 1 if len(index) else 0, block):
        rows = index[(index >= lo) & (index < lo + block)]
        if len(rows):
            values = phi[lo : rows[-1] + 1].values[rows - lo]
            out[done : done + len(rows)] = values.reshape(len(rows), *out.shape[1:])
            done += len(rows)
    return out, labels


# torch is imported where it is used, so stages without it (geometry, statistics,
# figures) do not pay its start-up time.
def save_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, remedy: str = "") -> Any:
    import torch

    return _read_checked(
        path, "checkpoint", lambda p: torch.load(p, map_location="cpu", weights_only=False), remedy
    )


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
