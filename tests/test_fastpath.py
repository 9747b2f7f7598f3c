"""The fast hot path equals the straightforward reference (benchmarks/reference.py).

The analytic inner-loop gradient (``siren.mse_grads``) is checked against
``torch.autograd.grad`` for first-order values and, through K steps with create_graph,
for the meta-gradient w.r.t. theta, alpha and the output layer; the whole meta-train
step and the fit against the image-by-image reference with the same weights.
"""

import sys
from pathlib import Path

import pytest
import torch

from inrroute.config import Combination, from_mapping
from inrroute.fitting import fit_batches
from inrroute.model import MWT, ImageShape, ModelSpec, training_step
from inrroute.siren import (
    SharedSiren,
    coordinate_grid,
    init_alphas,
    inner_loop,
    mse_grads,
    mse_grads_autograd,
    reconstruction_loss,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference

from inrroute.config import ModelConfig

# float64: the two computations differ only by rounding, so tolerances can be tight.
TIGHT = {"rtol": 1e-9, "atol": 1e-11}
LOOSE = {"rtol": 2e-4, "atol": 2e-5}


def make_siren(width=12, depth=2, steps=3, channels=1, dtype=torch.float64, seed=0):
    """Random draws in float32, then cast: every dtype gets the same weights."""
    gen = torch.Generator().manual_seed(seed)
    cfg = ModelConfig(width=width, depth=depth, inner_steps=steps)
    siren = SharedSiren(cfg, channels, gen)
    alphas = init_alphas(siren.theta, steps, 0.1, 1.0, gen)
    with torch.no_grad():  # a non-trivial output layer and biases
        siren.out_b.uniform_(-0.2, 0.2, generator=gen)
        siren.out_scale.uniform_(0.5, 1.5, generator=gen)
        for b in list(siren.theta)[1::2]:
            b.uniform_(-0.3, 0.3, generator=gen)
    return siren.to(dtype), alphas.to(dtype)


def targets_for(n, height, width, channels, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, height * width, channels, generator=gen) * 2 - 1).to(dtype)


def random_phi(siren, n, scale=0.05, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, *t.shape, generator=gen) * scale).to(t.dtype).requires_grad_(True)
        for t in siren.theta
    ]


@pytest.mark.parametrize(("depth", "channels"), [(1, 1), (2, 3), (3, 1)])
@pytest.mark.parametrize("shared", [False, True])
def test_analytic_gradient_equals_autograd_float64(depth, channels, shared):
    siren, _ = make_siren(depth=depth, channels=channels)
    coords = coordinate_grid(5, 7).double()
    targets = targets_for(4, 5, 7, channels, torch.float64)
    phi = (
        [p.detach().zero_().requires_grad_(True) for p in random_phi(siren, 4)]
        if shared
        else random_phi(siren, 4)
    )
    want = mse_grads_autograd(siren, coords, phi, targets, create_graph=False)
    got = mse_grads(siren, coords, None if shared else phi, targets)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TIGHT)
    with torch.no_grad():  # the in-place, graph-free variant used for fitting
        got_ng = mse_grads(siren, coords, None if shared else phi, targets)
    for g, w in zip(got_ng, want, strict=True):
        torch.testing.assert_close(g, w, **TIGHT)
        assert not g.requires_grad


def test_analytic_gradient_equals_autograd_float32():
    siren, _ = make_siren(width=32, depth=3, dtype=torch.float32)
    coords = coordinate_grid(12, 12)
    targets = targets_for(8, 12, 12, 1, torch.float32)
    phi = random_phi(siren, 8)
    want = mse_grads_autograd(siren, coords, phi, targets, create_graph=False)
    for g, w in zip(mse_grads(siren, coords, phi, targets), want, strict=True):
        torch.testing.assert_close(g, w, **LOOSE)


def meta_grads(siren, alphas, coords, targets, analytic):
    """phi after K steps and d(loss)/d(theta, alpha, output layer) through the inner loop."""
    phi = inner_loop(siren, alphas, coords, targets, create_graph=True, analytic=analytic)
    loss = reconstruction_loss(siren(coords, phi), targets).sum()
    loss = loss + sum((p[:, :3] ** 2).sum() for p in phi[2:])  # a token-like term on phi
    params = [*siren.parameters(), *alphas.parameters()]
    return phi, torch.autograd.grad(loss, params)


def assert_close_scaled(got, want, tol, name=""):
    """|got - want| <= tol * max|want|: float32 second-order values round relative to the
    tensor's scale, not element by element."""
    err = float((got.double() - want.double()).abs().max() / want.double().abs().max())
    assert err <= tol, f"{name}: normalized error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize(("depth", "steps", "channels"), [(1, 2, 1), (3, 3, 3)])
def test_meta_gradient_through_analytic_inner_loop_equals_autograd(depth, steps, channels):
    grads = {}
    for dtype in (torch.float64, torch.float32):
        siren, alphas = make_siren(
            width=10, depth=depth, steps=steps, channels=channels, dtype=dtype
        )
        coords = coordinate_grid(6, 6).to(dtype)
        targets = targets_for(3, 6, 6, channels, dtype)
        for analytic in (True, False):
            grads[dtype, analytic] = meta_grads(siren, alphas, coords, targets, analytic)
    names = [n for n, _ in siren.named_parameters()] + [f"alpha{i}" for i in range(len(alphas))]
    assert {"out_w", "out_b", "out_scale"} <= set(names)
    # float64: equal up to rounding, element by element (phi_K and every meta-gradient).
    (phi_a, g_a), (phi_r, g_r) = grads[torch.float64, True], grads[torch.float64, False]
    for a, r in zip(phi_a, phi_r, strict=True):
        torch.testing.assert_close(a, r, **TIGHT)
    for name, a, r in zip(names, g_a, g_r, strict=True):
        assert r.abs().max() > 0, name  # every meta-gradient is exercised
        torch.testing.assert_close(a, r, **TIGHT, msg=lambda m, n=name: f"{n}: {m}")
    # float32: as close to the float64 truth as autograd's own float32 result is.
    phi_32, g_32 = grads[torch.float32, True]
    for a, r in zip(phi_32, phi_r, strict=True):
        torch.testing.assert_close(a.double(), r, **LOOSE)
    for name, a, a_auto, r in zip(names, g_32, grads[torch.float32, False][1], g_r, strict=True):
        assert_close_scaled(a, r, 3e-3, name)
        assert_close_scaled(a, a_auto, 3e-3, name)


def test_first_order_inner_loop_keeps_no_graph():
    siren, alphas = make_siren()
    coords = coordinate_grid(4, 4).double()
    targets = targets_for(2, 4, 4, 1, torch.float64)
    phi = inner_loop(siren, alphas, coords, targets, create_graph=False)
    assert all(not p.requires_grad and p.grad_fn is None for p in phi)
    want = inner_loop(siren, alphas, coords, targets, create_graph=False, analytic=False)
    for p, w in zip(phi, want, strict=True):
        torch.testing.assert_close(p, w, **TIGHT)


TINY = {
    "model": {"width": 10, "depth": 2, "inner_steps": 2},
    "reader": {"dim": 16, "depth": 2, "heads": 2},
    "training": {"batch_size": 6},
    "factors": {"bias_route_hidden": 8},
}


def model_pair(combo: Combination, dtype=torch.float64, seed=0):
    cfg = from_mapping(TINY)
    model = MWT(ModelSpec.from_config(cfg, combo, ImageShape(1, 7, 6), 10, seed)).to(dtype)
    gen = torch.Generator().manual_seed(seed + 5)
    images = (torch.rand(6, 1, 7, 6, generator=gen) * 2 - 1).to(dtype)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    return cfg, model, images, labels


@pytest.mark.parametrize(
    "combo",
    [
        Combination(),
        Combination(cluster=True, dense_fit=True),
        Combination(route=True, bias_route=True),
    ],
    ids=lambda c: c.name,
)
@pytest.mark.parametrize("analytic", [True, False])
def test_training_step_equals_reference(combo, analytic):
    cfg, model, images, labels = model_pair(combo)
    model.analytic_inner_grad = analytic
    out = training_step(model, images, labels, cfg)
    grads = torch.autograd.grad(out.loss, list(model.parameters()), allow_unused=True)
    ref = reference.training_step(model, images, labels, cfg)
    ref_grads = torch.autograd.grad(ref["loss"], list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(out.loss, ref["loss"], **TIGHT)
    torch.testing.assert_close(out.mse, ref["mse"].detach(), **TIGHT)
    torch.testing.assert_close(out.cluster, ref["cluster"].detach(), **TIGHT)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads, strict=True):
        if r is None:
            assert g is None or not g.any(), name
            continue
        torch.testing.assert_close(g, r, **TIGHT, msg=lambda m, n=name: f"{n}: {m}")


def test_training_step_equals_reference_float32():
    cfg, model, images, labels = model_pair(Combination(), dtype=torch.float32)
    out = training_step(model, images, labels, cfg)
    grads = torch.autograd.grad(out.loss, list(model.parameters()))
    ref = reference.training_step(model, images, labels, cfg)
    ref_grads = torch.autograd.grad(ref["loss"], list(model.parameters()))
    torch.testing.assert_close(out.loss, ref["loss"], **LOOSE)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads, strict=True):
        scale = max(float(r.abs().max()), 1e-6)
        torch.testing.assert_close(g / scale, r / scale, **LOOSE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fit_equals_one_at_a_time_reference(dtype):
    _, model, images, _ = model_pair(Combination(), dtype=dtype)
    tokens, scores = fit_batches(model, images, batch_size=4, device=torch.device("cpu"))
    ref_tokens, ref_scores = reference.fit_images(model, images)
    tol = TIGHT if dtype == torch.float64 else LOOSE
    torch.testing.assert_close(tokens, ref_tokens.to(tokens.dtype), **tol)
    torch.testing.assert_close(scores, ref_scores.to(scores.dtype), **tol)
