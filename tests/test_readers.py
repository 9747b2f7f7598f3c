"""Fresh reader families (issue 15): each trains on real phi of the digits and beats
chance; the interventions and the token-flow probe apply to each; fresh_reader.nc carries
the reader_family dimension."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrroute import readers, study
from inrroute.config import Combination, from_mapping
from inrroute.data import ImageSet, load_digits_raw, to_float
from inrroute.fitting import fit_batches, fitted_dataset
from inrroute.model import load_model
from inrroute.reading import run_fresh_reader, train_fresh_reader
from inrroute.training import meta_train

CPU = torch.device("cpu")
N_TRAIN, N_TEST = 400, 150
CFG = from_mapping(
    {
        "model": {"width": 16, "depth": 2, "inner_steps": 2},
        "reader": {"dim": 16, "depth": 2, "heads": 2},  # 4 depths; the others have 3
        "training": {"epochs": 4, "batch_size": 32, "lr": 0.003},
        "probes": {"knn_k": 5, "intervention_draws": 2, "fresh_reader_epochs": 10},
    }
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Real phi: digits fitted by a briefly meta-trained MWT (as in a run of the study)."""
    train, test = load_digits_raw(0)
    images = np.concatenate([train.images[:N_TRAIN], test.images[:N_TEST]])
    labels = np.concatenate([train.labels[:N_TRAIN], test.labels[:N_TEST]])
    split = np.array(["train"] * N_TRAIN + ["test"] * N_TEST)
    train_set = ImageSet(to_float(images[:N_TRAIN]), torch.from_numpy(labels[:N_TRAIN]))
    out = tmp_path_factory.mktemp("mwt")
    meta_train(CFG, Combination(), 0, train_set, out, CPU, progress=False)
    model = load_model(out / "model.pt")
    tokens, psnrs = fit_batches(model, to_float(images), 256, CPU)
    return model, fitted_dataset(tokens, psnrs, labels, split, model.spec)


def test_families_are_the_study_vocabulary():
    assert tuple(readers.FAMILIES) == study.READER_FAMILIES
    assert CFG.probes.reader_families == study.READER_FAMILIES


@pytest.mark.parametrize("family", study.READER_FAMILIES)
def test_each_family_beats_chance_on_real_phi(family, fitted):
    from inrroute.fitting import tokens_of
    from inrroute.reading import predict

    model, ds = fitted
    xtr, ytr = tokens_of(ds, "train")
    xte, yte = tokens_of(ds, "test")
    reader = train_fresh_reader(model, CFG, xtr, ytr, 0, CPU, family)
    acc = float((predict(reader, xte, CPU) == yte.numpy()).mean())
    assert acc > 0.3, f"{family}: test accuracy {acc:.3f}, chance is 0.1"
    reps = reader.depth_representations(xte[:7])
    assert len(reps) == len(reader.depth_names()) >= 3
    assert all(r.shape[0] == 7 and r.ndim == 2 for r in reps)


def test_deepsets_is_invariant_to_permuting_a_layers_neurons(fitted):
    _, ds = fitted
    from inrroute.fitting import tokens_of

    x, _ = tokens_of(ds, "test")
    reader = readers.build_family("deepsets", fitted[0].spec, None, x).eval()
    perm = torch.cat([torch.randperm(16), 16 + torch.randperm(16)])  # within each layer
    with torch.no_grad():
        assert torch.allclose(reader(x), reader(x[:, perm]), atol=1e-5)


def test_fresh_reader_dataset_has_every_family(fitted):
    model, ds = fitted
    out = run_fresh_reader(model, ds, CFG, CPU)
    assert list(out["reader_family"].values) == list(study.READER_FAMILIES)
    assert out["accuracy"].dims == ("reader_family",)
    assert out["intervention_accuracy"].dims == ("reader_family", "intervention")
    assert list(out["intervention"].values) == list(study.INTERVENTIONS)
    # "none" is the plain test accuracy of each family
    np.testing.assert_allclose(
        out["intervention_accuracy"].sel(intervention="none").values, out["accuracy"].values
    )
    tf = out["tokenflow_consistency"]
    assert tf.dims == ("reader_family", "reader_depth")
    names = out["reader_depth_name"]
    assert str(names.sel(reader_family="mlp", reader_depth=0).values) == "input"
    # every family has a finite value where it has a depth, NaN where it has none
    assert (np.isfinite(tf.values) == (names.values != "")).all()
    assert tf.sizes["reader_depth"] == 4  # the transformer's; mlp and deepsets have 3
    assert np.isnan(tf.sel(reader_family="mlp", reader_depth=3))
    # the transformer family is today's fresh reader, unchanged
    from inrroute.fitting import tokens_of
    from inrroute.reading import predict

    xtr, ytr = tokens_of(ds, "train")
    xte, yte = tokens_of(ds, "test")
    ref = train_fresh_reader(model, CFG, xtr, ytr, model.spec.seed, CPU)
    acc = float((predict(ref, xte, CPU) == yte.numpy()).mean())
    assert float(out["accuracy"].sel(reader_family="transformer")) == pytest.approx(acc)


def test_one_family_is_enough(fitted):
    model, ds = fitted
    cfg = from_mapping({**CFG.to_dict(), "probes": {**CFG.to_dict()["probes"],
                                                    "reader_families": ["mlp"]}})  # fmt: skip
    out = run_fresh_reader(model, ds, cfg, CPU)
    assert list(out["reader_family"].values) == ["mlp"]


def test_the_cost_model_prices_every_family():
    """Each family has a cost; the fresh_reader job's planned time grows with families."""
    from inrroute import plan

    costs = plan.load_costs()
    assert set(costs["constants"]["reader_family_cost"]) == set(study.READER_FAMILIES)
    one = from_mapping({**CFG.to_dict(), "probes": {**CFG.to_dict()["probes"],
                                                    "reader_families": ["transformer"]}})  # fmt: skip
    alone = plan.run_cost(one, "fresh_reader", "digits", costs)["seconds"]
    every = plan.run_cost(CFG, "fresh_reader", "digits", costs)["seconds"]
    assert alone < every < 2 * alone
