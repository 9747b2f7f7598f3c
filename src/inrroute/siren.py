"""The SIREN, its batched forward pass, the Meta-SGD inner loop and the token layout.

Everything is batched over images: per-image parameters carry a leading batch dimension
and every layer is one batched matmul, so fitting N images costs one pass, not N.
Parameter lists are ordered ``[W0, b0, W1, b1, ..., W_depth, b_depth]`` where ``W0`` is the
2 -> width input layer (adapted, not read) and ``W1..W_depth`` are the hidden layers whose
offsets become the reader's tokens. The output layer is shared and never adapted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


def coordinate_grid(height: int, width: int) -> Tensor:
    """Pixel-centre coordinates in [-1, 1]^2, shape (height * width, 2), row-major (y, x)."""
    ys = torch.linspace(-1.0, 1.0, height)
    xs = torch.linspace(-1.0, 1.0, width)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2)


def images_to_targets(images: Tensor) -> Tensor:
    """(B, C, H, W) images in [-1, 1] -> (B, H*W, C) regression targets."""
    b, c = images.shape[:2]
    return images.reshape(b, c, -1).transpose(1, 2)


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR in dB on the [0, 1] scale; inputs (B, P, C) in [-1, 1]."""
    p = ((pred.clamp(-1, 1) + 1) / 2).flatten(1)
    t = ((target + 1) / 2).flatten(1)
    mse = ((p - t) ** 2).mean(dim=1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


class SharedSiren(nn.Module):
    """Shared anchor theta (input + hidden layers) and the shared, scaled output layer."""

    def __init__(self, cfg: ModelConfig, channels: int, generator: torch.Generator):
        super().__init__()
        self.width, self.depth, self.omega = cfg.width, cfg.depth, cfg.omega
        self.channels = channels
        params = []
        fan_ins = [2] + [cfg.width] * cfg.depth
        for layer, fan_in in enumerate(fan_ins):
            bound = 1.0 / fan_in if layer == 0 else math.sqrt(6.0 / fan_in)
            w = torch.empty(cfg.width, fan_in).uniform_(-bound, bound, generator=generator)
            params += [nn.Parameter(w), nn.Parameter(torch.zeros(cfg.width))]
        self.theta = nn.ParameterList(params)
        bound = math.sqrt(6.0 / cfg.width)
        out_w = torch.empty(channels, cfg.width).uniform_(-bound, bound, generator=generator)
        self.out_w = nn.Parameter(out_w)
        self.out_b = nn.Parameter(torch.zeros(channels))
        self.out_scale = nn.Parameter(torch.full((channels,), cfg.out_scale_init))

    def zero_offsets(self, batch: int) -> list[Tensor]:
        """phi_0 = 0 for every adapted parameter, with a leading batch dimension."""
        return [torch.zeros(batch, *p.shape, device=p.device, dtype=p.dtype) for p in self.theta]

    def forward(self, coords: Tensor, phi: Sequence[Tensor]) -> Tensor:
        """Evaluate SIREN(theta + phi) at ``coords`` (P, 2) -> (B, P, C)."""
        params = [t + p for t, p in zip(self.theta, phi, strict=True)]
        w0, b0 = params[0], params[1]
        # Layer 0: coordinates are shared by all images, so one broadcast matmul.
        h = torch.sin(self.omega * (torch.matmul(coords, w0.transpose(1, 2)) + b0[:, None, :]))
        for layer in range(1, self.depth + 1):
            w, b = params[2 * layer], params[2 * layer + 1]
            h = torch.sin(torch.baddbmm(b[:, None, :], h, w.transpose(1, 2)))
        return (h @ self.out_w.T + self.out_b) * self.out_scale


def init_alphas(
    theta: Sequence[Tensor], steps: int, low: float, high: float, generator: torch.Generator
) -> nn.ParameterList:
    """Meta-SGD learning rates: one per parameter per inner step, U(low, high)."""
    return nn.ParameterList(
        nn.Parameter(torch.empty(steps, *p.shape).uniform_(low, high, generator=generator))
        for p in theta
    )


def reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image MSE (B,). Summing it over images keeps each image's gradient its own."""
    return ((pred - target) ** 2).flatten(1).mean(dim=1)


def _affine(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """h @ w^T + b for per-image (batched, 3-D) or shared (2-D) parameters.

    Shared parameters (phi = 0, the first inner step) make one plain GEMM over all rows;
    per-image ones make one batched matmul.
    """
    if w.dim() == 2:
        return F.linear(h, w, b)
    if h.dim() == 2:  # shared input (the coordinates), per-image weights
        h = h.expand(w.shape[0], *h.shape)
    return torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))


class _SinCos(torch.autograd.Function):
    """(sin z, cos z) in one node that saves both outputs for its backward.

    Autograd of ``sin`` and ``cos`` separately would recompute cos z and sin z in the
    backward pass; here d/dz = g_sin * cos z - g_cos * sin z reuses the saved values.
    The backward is itself made of differentiable ops.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> tuple[Tensor, Tensor]:
        s, c = torch.sin(z), torch.cos(z)
        ctx.save_for_backward(s, c)
        return s, c

    @staticmethod
    def backward(ctx, g_sin: Tensor, g_cos: Tensor) -> Tensor:
        s, c = ctx.saved_tensors
        return torch.addcmul(g_sin * c, g_cos, s, value=-1.0)


def _sin_cos(z: Tensor) -> tuple[Tensor, Tensor]:
    if torch.is_grad_enabled() and z.requires_grad:
        return _SinCos.apply(z)
    c = torch.cos(z)
    return z.sin_(), c  # z is a temporary here: overwrite it


def mse_grads(
    siren: SharedSiren, coords: Tensor, phi: Sequence[Tensor] | None, targets: Tensor
) -> list[Tensor]:
    """Analytic gradient of ``reconstruction_loss(...).sum()`` w.r.t. every offset in phi.

    A hand-written backward pass of the SIREN (per layer: one matmul for the weight
    gradient, one to carry the gradient down), built from ordinary differentiable torch
    ops, so autograd can differentiate *through* it for the second-order meta-gradient.
    ``phi=None`` means phi = 0: the forward pass is then the same for every image and is
    computed once, shared. Returns one (B, *theta_i.shape) gradient per adapted tensor.

    Without grad mode (first-order fitting) temporaries are reused in place.
    """
    inplace = not torch.is_grad_enabled()
    if phi is None:
        params = list(siren.theta)
    else:
        params = [t + p for t, p in zip(siren.theta, phi, strict=True)]
    omega = siren.omega
    n_pix, channels = targets.shape[1:]
    # Forward, keeping each layer's input h and cos(pre-activation). omega is folded
    # into the (small) layer-0 parameters rather than applied to (B, P, width).
    hs, coss = [coords], []
    for layer in range(siren.depth + 1):
        w, b = params[2 * layer], params[2 * layer + 1]
        if layer == 0:
            w, b = w * omega, b * omega
        h, cos = _sin_cos(_affine(hs[-1], w, b))
        hs.append(h)
        coss.append(cos)
    pred = F.linear(hs[-1], siren.out_w, siren.out_b) * siren.out_scale
    # d(sum_i mean_{p,c} (pred - t)^2) / d pred, then through the scaled output layer.
    g_out = (pred - targets) * (siren.out_scale * (2.0 / (n_pix * channels)))
    dh = torch.matmul(g_out, siren.out_w)  # (B, P, width)
    grads: list[Tensor] = [dh] * (2 * siren.depth + 2)
    for layer in range(siren.depth, -1, -1):
        cos = coss[layer]
        da = dh.mul_(cos) if inplace else dh * cos  # dh is (B, P, width), cos broadcasts
        h_in = hs[layer]
        # dW[i] = da[i]^T h_in[i]; h_in is shared (2-D) for the coordinates and at phi = 0.
        if h_in.dim() == 3:
            dw = torch.bmm(da.transpose(1, 2), h_in)
        else:  # as (h_in^T da)^T: no copy of the transposed da
            dw = torch.matmul(h_in.T, da).transpose(1, 2).contiguous()
        db = da.sum(dim=1)
        if layer:
            dh = torch.matmul(da, params[2 * layer])
        else:
            dw, db = dw * omega, db * omega
        grads[2 * layer], grads[2 * layer + 1] = dw, db
    return grads


def mse_grads_autograd(
    siren: SharedSiren,
    coords: Tensor,
    phi: Sequence[Tensor],
    targets: Tensor,
    create_graph: bool,
) -> list[Tensor]:
    """The same gradient as :func:`mse_grads`, by ``torch.autograd.grad`` (the reference).

    ``phi`` must require grad (or be an offset computed from tensors that do).
    """
    with torch.enable_grad():
        loss = reconstruction_loss(siren(coords, phi), targets).sum()
        return list(torch.autograd.grad(loss, phi, create_graph=create_graph))


def inner_loop(
    siren: SharedSiren,
    alphas: Sequence[Tensor],
    coords: Tensor,
    targets: Tensor,
    create_graph: bool,
    analytic: bool = True,
) -> list[Tensor]:
    """K Meta-SGD steps from phi_0 = 0: phi_{j+1} = phi_j - alpha_j * grad MSE.

    ``create_graph=True`` keeps the second-order graph for meta-training; ``False`` is the
    first-order fit used after training (nothing is kept between steps).
    ``analytic=True`` (default) uses the hand-written SIREN backward :func:`mse_grads`
    (exact, tested against autograd); ``False`` falls back to ``torch.autograd.grad``.
    """
    steps = alphas[0].shape[0]
    if not analytic:
        return _inner_loop_autograd(siren, alphas, coords, targets, create_graph)
    with torch.set_grad_enabled(create_graph):
        phi: list[Tensor] | None = None
        for j in range(steps):
            grads = mse_grads(siren, coords, phi, targets)
            if phi is None:  # phi_0 = 0
                phi = [-a[j] * g for a, g in zip(alphas, grads, strict=True)]
            else:
                phi = [p - a[j] * g for p, a, g in zip(phi, alphas, grads, strict=True)]
    if phi is None:
        return siren.zero_offsets(targets.shape[0])
    return phi


def _inner_loop_autograd(
    siren: SharedSiren,
    alphas: Sequence[Tensor],
    coords: Tensor,
    targets: Tensor,
    create_graph: bool,
) -> list[Tensor]:
    steps = alphas[0].shape[0]
    phi = siren.zero_offsets(targets.shape[0])
    with torch.enable_grad():
        for j in range(steps):
            if not create_graph:
                phi = [p.detach().requires_grad_(True) for p in phi]
            elif j == 0:
                phi = [p.requires_grad_(True) for p in phi]
            grads = mse_grads_autograd(siren, coords, phi, targets, create_graph)
            phi = [p - a[j] * g for p, a, g in zip(phi, alphas, grads, strict=True)]
    return phi if create_graph else [p.detach() for p in phi]


def phi_to_tokens(phi: Sequence[Tensor], depth: int) -> Tensor:
    """Read layers' offsets -> tokens (B, depth, width, width + 1).

    Token (layer l, neuron o) = [W_l[o, :], b_l[o]]: the neuron's incoming weights, then
    its bias, so the last feature of every token is the bias column. Layer 0 is not read.
    """
    layers = [
        torch.cat([phi[2 * layer], phi[2 * layer + 1].unsqueeze(-1)], dim=-1)
        for layer in range(1, depth + 1)
    ]
    return torch.stack(layers, dim=1)


def tokens_to_phi(tokens: Tensor) -> list[Tensor]:
    """Inverse of :func:`phi_to_tokens` for the read layers: [W1, b1, ..., W_d, b_d]."""
    out = []
    for layer in range(tokens.shape[1]):
        out += [tokens[:, layer, :, :-1], tokens[:, layer, :, -1]]
    return out
