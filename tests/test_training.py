"""Meta-training: learns on real data, resumes bit-identically, factor switches."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from inrroute.config import Combination, from_mapping
from inrroute.data import split_of, stage
from inrroute.model import MWT, ImageShape, ModelSpec, backward, load_model, training_step
from inrroute.training import Interrupted, meta_train

TINY = {
    "model": {"width": 8, "depth": 1, "inner_steps": 2},
    "reader": {"dim": 16, "depth": 1, "heads": 2},
    "training": {"epochs": 2, "batch_size": 32, "lr": 0.003, "checkpoint_every": 3},
    "factors": {"bias_route_hidden": 8},
}


@pytest.fixture(scope="module")
def train_set():
    return split_of(stage("digits", "unused", 160, 50, seed=0), "train")


def state(path):
    return load_model(path).state_dict()


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, train_set):
    torch.set_num_threads(1)
    cfg = from_mapping(TINY)
    combo = Combination()
    ref = meta_train(cfg, combo, 0, train_set, tmp_path / "ref", torch.device("cpu"), False)
    with pytest.raises(Interrupted):  # mid-epoch: 160 images / 32 = 5 steps per epoch
        meta_train(
            cfg, combo, 0, train_set, tmp_path / "cut", torch.device("cpu"), False, max_steps=7
        )
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    assert not (tmp_path / "cut" / "model.pt").exists()
    cut = meta_train(cfg, combo, 0, train_set, tmp_path / "cut", torch.device("cpu"), False)
    a, b = state(ref), state(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = pd.read_csv(tmp_path / "ref" / "train_log.csv").drop(columns="seconds")
    lb = pd.read_csv(tmp_path / "cut" / "train_log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(la, lb, check_exact=True)
    assert list(la.epoch) == [0, 1]


def test_different_seeds_differ(tmp_path, train_set):
    cfg = from_mapping({**TINY, "training": {**TINY["training"], "epochs": 1}})
    p0 = meta_train(cfg, Combination(), 0, train_set, tmp_path / "s0", torch.device("cpu"), False)
    p1 = meta_train(cfg, Combination(), 1, train_set, tmp_path / "s1", torch.device("cpu"), False)
    assert not torch.equal(state(p0)["siren.theta.0"], state(p1)["siren.theta.0"])


def _model(combo, cfg=None):
    return MWT(
        ModelSpec.from_config(cfg or from_mapping(TINY), combo, ImageShape(1, 8, 8), 10, seed=0)
    )


def test_route_adds_one_class_token():
    cfg = from_mapping(TINY)
    tokens = torch.randn(3, 8, 9) * 1e-3
    base, routed = _model(Combination()), _model(Combination(route=True))
    m = base.reader.modulate(tokens)
    assert base.reader.sequence(m).shape[1] == 8
    assert routed.reader.sequence(routed.reader.modulate(tokens)).shape[1] == 9
    assert routed.reader.pool(torch.arange(18.0).view(1, 9, 2)).tolist() == [[0.0, 1.0]]
    assert cfg.model.depth * cfg.model.width == 8


def test_bias_route_token_is_fed_only_by_biases():
    model = _model(Combination(bias_route=True))
    reader = model.reader
    tokens = torch.randn(2, 8, 9) * 1e-3
    seq = reader.sequence(reader.modulate(tokens))
    assert seq.shape[1] == 9  # one extra token, appended
    changed = tokens.clone()
    changed[..., :-1] += 1.0  # every weight entry changes, biases do not
    seq2 = reader.sequence(reader.modulate(changed))
    torch.testing.assert_close(seq[:, -1], seq2[:, -1])
    changed[..., -1] += 1.0
    assert not torch.allclose(reader.sequence(reader.modulate(changed))[:, -1], seq[:, -1])


def test_dense_fit_doubles_steps_and_alphas():
    base, dense = _model(Combination()), _model(Combination(dense_fit=True))
    assert dense.inner_steps == 2 * base.inner_steps == 4
    for a, b in zip(base.alphas, dense.alphas, strict=True):
        assert b.shape[0] == 2 * a.shape[0] and b.shape[1:] == a.shape[1:]


def test_cluster_loss_reaches_theta_and_alpha_only(train_set):
    """DESIGN 3: the cluster loss flows into theta and alpha, not into the reader and not into
    the shared output layer (which phi depends on through the inner loop)."""
    cfg = from_mapping(TINY)
    images, labels = train_set.images[:32], train_set.labels[:32]
    models = {}
    for flag in (False, True):
        model = _model(Combination(cluster=flag), cfg)  # same seed: identical weights
        out = training_step(model, images, labels, cfg)
        assert (float(out.cluster) > 0) == flag
        backward(model, out)
        models[flag] = model
    off, on = models[False], models[True]
    for p_off, p_on in zip(off.reader.parameters(), on.reader.parameters(), strict=True):
        assert torch.equal(p_off.grad, p_on.grad)  # the cluster term never reaches the reader
    for name in ("out_w", "out_b", "out_scale"):
        g_off, g_on = getattr(off.siren, name).grad, getattr(on.siren, name).grad
        assert g_off.abs().max() > 0 and torch.equal(g_off, g_on), name
    # ... while one backward of the whole loss would have moved the output layer too.
    model = _model(Combination(cluster=True), cfg)
    training_step(model, images, labels, cfg).loss.backward()
    assert not torch.equal(model.siren.out_w.grad, off.siren.out_w.grad)
    assert not torch.equal(off.siren.theta[2].grad, on.siren.theta[2].grad)
    assert not torch.equal(off.alphas[2].grad, on.alphas[2].grad)


def test_two_epochs_on_digits_beat_chance_by_a_wide_margin(tmp_path):
    """Training learns on real data: the default study's model, 2 epochs on the full digits
    train split, reads the test split far above chance (0.1 for 10 classes)."""
    import yaml

    from inrroute.fitting import write_fitted
    from inrroute.io import read_netcdf
    from inrroute.reading import run_read

    torch.set_num_threads(2)
    raw = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    cfg = from_mapping({**raw, "training": {**raw["training"], "epochs": 2}})
    staged = stage("digits", "unused", None, None, seed=0)
    device = torch.device("cpu")
    path = meta_train(cfg, Combination(), 0, split_of(staged, "train"), tmp_path, device, False)
    model = load_model(path)
    write_fitted(model, staged, cfg, device, tmp_path / "fitted.nc", dict)
    reader = run_read(model, read_netcdf(tmp_path / "fitted.nc"), cfg, device)
    assert float(reader["accuracy"]) > 0.7, float(reader["accuracy"])
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["ce"].iloc[-1] < log["ce"].iloc[0]  # the loss went down
