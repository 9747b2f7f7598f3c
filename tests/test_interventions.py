"""Each intervention changes only what it claims."""

import numpy as np
import torch

from inrroute.config import Combination, from_mapping
from inrroute.interventions import (
    INTERVENTIONS,
    bias_interventions,
    intervention_dataset,
    shuffle_column,
    zero_column,
)
from inrroute.model import MWT, ImageShape, ModelSpec

GEN = torch.Generator().manual_seed(0)
TOKENS = torch.randn(12, 6, 5, generator=GEN)
PERM = torch.randperm(12, generator=GEN)


def test_bias_interventions_touch_only_the_bias_column():
    out = {k: fn(TOKENS) for k, fn in bias_interventions(PERM).items()}
    assert torch.equal(out["none"], TOKENS)
    for name in ("bias_zero", "bias_shuffle", "bias_mean"):
        assert torch.equal(out[name][..., :-1], TOKENS[..., :-1]), name
        assert not torch.equal(out[name][..., -1], TOKENS[..., -1]), name
    assert float(out["bias_zero"][..., -1].abs().max()) == 0
    mean = out["bias_mean"][..., -1]
    assert torch.allclose(mean, TOKENS[..., -1].mean(0, keepdim=True).expand_as(mean))
    assert float(out["bias_only"][..., :-1].abs().max()) == 0
    assert torch.equal(out["bias_only"][..., -1], TOKENS[..., -1])


def test_bias_shuffle_keeps_each_tokens_multiset_of_biases():
    shuffled = bias_interventions(PERM)["bias_shuffle"](TOKENS)[..., -1]
    original = TOKENS[..., -1]
    assert torch.equal(shuffled.sort(dim=0).values, original.sort(dim=0).values)
    assert not torch.equal(shuffled, original)


def test_column_controls_never_touch_the_bias_column():
    for col in range(TOKENS.shape[-1] - 1):
        for t in (zero_column(TOKENS, col), shuffle_column(TOKENS, col, PERM)):
            assert torch.equal(t[..., -1], TOKENS[..., -1])
            others = [c for c in range(TOKENS.shape[-1]) if c != col]
            assert torch.equal(t[..., others], TOKENS[..., others])


def test_intervention_dataset_dataset():
    cfg = from_mapping(
        {"model": {"width": 4, "depth": 1}, "reader": {"dim": 8, "depth": 1, "heads": 2}}
    )
    model = MWT(ModelSpec.from_config(cfg, Combination(), ImageShape(1, 8, 8), 10, seed=0))
    tokens = torch.randn(40, 4, 5) * 1e-3
    labels = np.arange(40) % 10
    ds = intervention_dataset(
        model.reader, tokens, labels, draws=3, seed=0, device=torch.device("cpu")
    )
    assert list(ds["intervention"].values) == list(INTERVENTIONS)
    assert ds["control_accuracy"].shape == (2, 3)
    assert (ds["control_column"].values < 4).all()  # never the bias feature (index 4)
    acc = ds["accuracy"].values
    assert ((acc >= 0) & (acc <= 1)).all()
    assert acc[INTERVENTIONS.index("col_zero")] == ds["control_accuracy"].values[0].mean()
