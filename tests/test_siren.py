"""SIREN shapes and init, one inner step by hand, the token layout."""

import math

import pytest
import torch

from inrroute.config import ModelConfig
from inrroute.siren import (
    SharedSiren,
    coordinate_grid,
    images_to_targets,
    init_alphas,
    inner_loop,
    phi_to_tokens,
    tokens_to_phi,
)

CFG = ModelConfig(width=16, depth=3, omega=10.0, inner_steps=2)


def make(cfg=CFG, channels=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    siren = SharedSiren(cfg, channels, gen)
    alphas = init_alphas(siren.theta, cfg.inner_steps, 0.1, 1.0, gen)
    return siren, alphas


def test_shapes_and_init_ranges():
    siren, alphas = make()
    w = CFG.width
    shapes = [tuple(p.shape) for p in siren.theta]
    assert shapes == [(w, 2), (w,), (w, w), (w,), (w, w), (w,), (w, w), (w,)]
    assert siren.theta[0].abs().max() <= 1 / 2  # U(-1/fan_in, 1/fan_in), fan_in = 2
    assert siren.theta[0].abs().max() > 0.4  # actually spread over that range
    for layer in range(1, CFG.depth + 1):
        bound = math.sqrt(6 / w)
        assert siren.theta[2 * layer].abs().max() <= bound
        assert siren.theta[2 * layer].abs().max() > 0.8 * bound
    assert all(float(siren.theta[i].detach().abs().max()) == 0 for i in range(1, 8, 2))  # biases 0
    assert [tuple(a.shape) for a in alphas] == [(2, *s) for s in shapes]
    assert all(0.1 <= float(a.detach().min()) and float(a.detach().max()) <= 1.0 for a in alphas)
    coords = coordinate_grid(5, 7)
    assert coords.shape == (35, 2) and coords.min() == -1 and coords.max() == 1
    out = siren(coords, siren.zero_offsets(4))
    assert out.shape == (4, 35, 1)


def test_one_inner_step_matches_hand_computation():
    siren, alphas = make()
    images = torch.rand(3, 1, 5, 6) * 2 - 1
    targets = images_to_targets(images)
    coords = coordinate_grid(5, 6)
    one_step = torch.nn.ParameterList(a[:1] for a in alphas)
    phi = inner_loop(siren, one_step, coords, targets, create_graph=False)
    # By hand, image by image: grad of that image's MSE at theta, times alpha_0.
    for i in range(3):
        params = [t.detach().clone().requires_grad_(True) for t in siren.theta]
        h = torch.sin(CFG.omega * (coords @ params[0].T + params[1]))
        for layer in range(1, CFG.depth + 1):
            h = torch.sin(h @ params[2 * layer].T + params[2 * layer + 1])
        pred = (h @ siren.out_w.T + siren.out_b) * siren.out_scale
        loss = ((pred - targets[i]) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        for p_fit, a, g in zip(phi, alphas, grads, strict=True):
            torch.testing.assert_close(p_fit[i], -a[0].detach() * g, rtol=1e-5, atol=1e-7)


def test_token_layout_incoming_weights_then_bias_and_round_trip():
    siren, _ = make()
    phi = [torch.randn(2, *p.shape) for p in siren.theta]
    tokens = phi_to_tokens(phi, CFG.depth)
    assert tokens.shape == (2, CFG.depth, CFG.width, CFG.width + 1)
    layer, neuron = 2, 5  # hidden layer 2 is phi[4], phi[5]
    torch.testing.assert_close(tokens[1, layer - 1, neuron, :-1], phi[2 * layer][1, neuron])
    assert tokens[1, layer - 1, neuron, -1] == phi[2 * layer + 1][1, neuron]
    back = tokens_to_phi(tokens)
    for got, want in zip(back, phi[2:], strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("create_graph", [False, True])
def test_inner_loop_reduces_reconstruction_error(create_graph):
    from sklearn.datasets import load_digits

    siren, alphas = make(ModelConfig(width=32, depth=2, inner_steps=3), seed=1)
    with torch.no_grad():
        siren.out_scale.fill_(0.1)
    images = torch.tensor(load_digits().images[:16], dtype=torch.float32)[:, None] / 8 - 1
    targets = images_to_targets(images)
    coords = coordinate_grid(8, 8)
    phi = inner_loop(siren, alphas, coords, targets, create_graph)
    before = ((siren(coords, siren.zero_offsets(16)) - targets) ** 2).mean()
    after = ((siren(coords, phi) - targets) ** 2).mean()
    assert after < 0.8 * before  # untrained theta and alpha: a clear but modest gain
    assert phi[0].requires_grad == create_graph
