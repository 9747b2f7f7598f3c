"""Staging: real digits, stratified reproducible caps, the staged file's layout."""

import numpy as np
import pytest
import torch

from inrroute.data import stage, stratified_cap


def test_digits_staged_layout():
    ds = stage("digits", "unused", None, None, seed=0)
    assert ds["images"].dims == ("sample", "channel", "y", "x")
    assert ds["images"].dtype == np.uint8 and ds["images"].shape[1:] == (1, 8, 8)
    assert int(ds["images"].max()) == 255
    split = ds["split"].values
    assert (split == "train").sum() == 1347 and (split == "test").sum() == 450
    # Stratified 75/25: every class keeps about a quarter of its images in test.
    labels = ds["label"].values
    for c in range(10):
        frac = ((labels == c) & (split == "test")).sum() / (labels == c).sum()
        assert 0.22 < frac < 0.28


def test_caps_are_stratified_and_reproducible():
    a = stage("digits", "unused", 200, 100, seed=3)
    b = stage("digits", "unused", 200, 100, seed=3)
    c = stage("digits", "unused", 200, 100, seed=4)
    assert np.array_equal(a["images"].values, b["images"].values)
    assert not np.array_equal(a["images"].values, c["images"].values)
    test_labels = a["label"].values[a["split"].values == "test"]
    assert len(test_labels) == 100
    assert np.bincount(test_labels, minlength=10).min() >= 9  # 10 per class +- rounding


def test_cap_larger_than_split_is_an_error():
    with pytest.raises(ValueError, match="caps.digits.test: cap 1000 is larger"):
        stage("digits", "unused", None, 1000, seed=0)
    labels = np.repeat(np.arange(4), 25)
    idx = stratified_cap(labels, 40, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 10, 10, 10]


def test_fashion_mnist_from_debian_files(tmp_path):
    from inrroute.data import DEBIAN_FASHION_MNIST

    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    ds = stage("fashion_mnist", tmp_path, 500, 100, seed=0)
    assert ds["images"].shape[1:] == (1, 28, 28)
    assert (ds["split"].values == "train").sum() == 500


def test_validation_split_is_stratified_disjoint_and_from_train_only():
    from inrroute.data import split_of, stage, validation_split

    staged = stage("digits", "unused", None, None, seed=0)
    train, test = split_of(staged, "train"), split_of(staged, "test")
    fit, val = validation_split(train, 0.2, seed=0)
    assert len(fit) + len(val) == len(train) and abs(len(val) - 0.2 * len(train)) <= 1
    key = lambda s: {tuple(img.flatten().tolist()) for img in s.images}
    assert not key(fit) & key(val)  # disjoint
    assert key(val) <= key(train) and not key(val) & key(test)  # carved from train only
    share = np.bincount(val.labels.numpy(), minlength=10) / len(val)
    assert np.allclose(
        share, np.bincount(train.labels.numpy(), minlength=10) / len(train), atol=0.01
    )
    again, _ = validation_split(train, 0.2, seed=0)
    assert torch.equal(again.labels, fit.labels)  # deterministic for a seed
