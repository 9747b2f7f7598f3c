"""fitted.nc at paper scale: half-precision phi, chunked per fit batch, compressed, written
batch by batch; readers take one split (or a stratified sample of it) in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from inrroute import cli
from inrroute.config import Combination, load_config
from inrroute.data import split_of, stage
from inrroute.fitting import tokens_of
from inrroute.io import PHI_BITS, fitted_split, open_netcdf, read_netcdf, write_netcdf
from inrroute.training import meta_train
from tiny import write_config

COMBO = "cluster0_route0_biasroute0_densefit0"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny run fitted with fit.batch_size 32 and a 60-image train sample."""
    root = tmp_path_factory.mktemp("storage")
    config = write_config(root / "config.yaml", root / "results", combinations=[COMBO],
                          training={"epochs": 1, "batch_size": 16},
                          fit={"batch_size": 32, "train_images": 60})  # fmt: skip
    data = root / "digits.nc"
    write_netcdf(stage("digits", root / "raw", 200, 100, seed=0), data)
    cfg = load_config(config)
    torch.set_num_threads(1)
    train = split_of(read_netcdf(data), "train")
    meta_train(cfg, Combination.parse(COMBO), 0, train, root / "run", torch.device("cpu"), False)
    out = root / "run" / "fitted.nc"
    code = cli.main(["fit", "--config", str(config), "--model", str(root / "run" / "model.pt"),
                     "--data", str(data), "--out", str(out), "--threads", "1",
                     "--no-progress"])  # fmt: skip
    assert code == 0
    return out


def test_phi_is_half_precision_chunked_and_compressed(fitted):
    with xr.open_dataset(fitted) as ds:
        assert ds["phi"].dims == ("sample", "layer", "neuron", "feature")
        enc = ds["phi"].encoding
        assert enc["zlib"] and enc["shuffle"]
        assert enc["chunksizes"] == (32, *ds["phi"].shape[1:])  # one chunk per fit batch
        assert enc.get("quantize_mode") == "BitRound" or "_QuantizeBitRoundNumberOfSignificantBits" in ds["phi"].attrs  # fmt: skip
        phi = ds["phi"].values
        # at most float16's 11 significant bits: the lower 13 mantissa bits are zero
        assert not np.any(phi.view(np.uint32) & np.uint32(2 ** (23 - PHI_BITS) - 1))
        # every test image, and the stratified train sample
        split = ds["split"].values
        assert (split == "test").sum() == 100 and (split == "train").sum() == 60
        assert np.bincount(ds["label"].values[split == "train"]).min() >= 5
        assert np.isfinite(ds["psnr"].values).all()
        assert "inrroute_config_hash" in ds.attrs and ds.attrs["inrroute_rule"] == "fit"


def test_block_reads_equal_a_whole_read(fitted, monkeypatch):
    from inrroute import io

    whole = read_netcdf(fitted)
    monkeypatch.setattr(io, "READ_BLOCK", 7)  # many blocks, not aligned to anything
    with open_netcdf(fitted) as lazy:
        for split in ("train", "test"):
            phi, labels = fitted_split(lazy, split)
            mask = whole["split"].values == split
            expected = whole["phi"].values[mask]
            assert phi.dtype == np.float16
            np.testing.assert_array_equal(phi, expected.reshape(phi.shape).astype(np.float16))
            np.testing.assert_array_equal(labels, whole["label"].values[mask])
        sub, sub_labels = fitted_split(lazy, "test", sample=30, seed=3, dtype=np.float32)
        assert sub.shape[0] == 30 and sub.dtype == np.float32
        assert set(np.unique(sub_labels)) == set(range(10))  # stratified
        tokens, _ = tokens_of(lazy, "test")
        assert tokens.dtype == torch.float16
