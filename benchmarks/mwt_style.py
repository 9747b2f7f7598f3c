"""A meta-train step built the way the MWT reference code builds it, for the step ratio.

The published MWT code (SanderGielisse/MWT; read through its fork weixiang-zhang/MWT,
train.py, siren_model.py, meta_sgd.py, wt.py at commit 8962c10) cannot be fetched on this
machine, and this project copies no third-party code. This module is our own code that
follows the reference's *structure* at a given size, so the ratio of its step to
``inrroute.model.training_step`` measures what our restructuring buys:

* per-image SIREN weights as one flat offset vector ``(N, P)`` added to shared weights,
  every sine layer's weights and biases adapted, layers applied with broadcast
  ``torch.matmul`` (shared ``[None]`` + per-image offset), sine of ``omega * z`` in the
  first layer, shared linear output head times a learned scale;
* K inner steps, each a forward pass over a random permutation of all pixels
  (``torch.multinomial``, the reference's ``sample`` with its default of every pixel),
  ``torch.autograd.grad(create_graph=True)`` on the flat offset, one rate per step and
  parameter (Meta-SGD), then a (K+1)-th forward pass for the reconstruction loss;
* tokens: each hidden layer's (incoming weights, bias) per neuron, first layer skipped;
* reader: learned additive token embedding, scaled tokens, linear projection, pre-norm
  blocks of written-out softmax attention (qkv without bias) and a GELU MLP, each branch
  with a per-channel layer scale (0.1), mean pooling, linear head;
* two backward passes (classification with retained graph, its gradient on the SIREN and
  rates scaled by cls_loss_weight, then reconstruction), gradient clipping per parameter
  group (SIREN, rates, reader), one AdamW with three groups, one-cycle schedule.

Float32 on CPU: the reference's fp16 autocast is a CUDA feature. Not in CI; run through
``python benchmarks/run.py --mwt``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FlatSiren(nn.Module):
    """Shared sine layers; a per-image flat offset is added to every weight and bias."""

    def __init__(self, width: int, depth: int, omega: float):
        super().__init__()
        self.omega = omega
        shapes = [(2, width)] + [(width, width)] * depth  # (fan_in, fan_out) per layer
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(shapes):
            bound = 1 / fan_in if i == 0 else math.sqrt(6 / fan_in)
            self.weights.append(nn.Parameter(torch.empty(fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(fan_out)))
        self.out = nn.Linear(width, 1)
        self.out_scale = nn.Parameter(torch.full((1,), 0.1))
        self.sizes = [w.numel() + b.numel() for w, b in zip(self.weights, self.biases)]
        self.n_params = sum(self.sizes)

    def split(self, offset: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Flat (N, P) offsets -> per layer (weight (N, in, out), bias (N, out))."""
        out, start = [], 0
        for w, b in zip(self.weights, self.biases):
            dw = offset[:, start : start + w.numel()].view(-1, *w.shape)
            start += w.numel()
            db = offset[:, start : start + b.numel()]
            start += b.numel()
            out.append((dw, db))
        return out

    def forward(self, coords: Tensor, offset: Tensor) -> Tensor:
        h = coords
        for i, ((dw, db), w, b) in enumerate(zip(self.split(offset), self.weights, self.biases)):
            z = h @ (w[None] + dw) + (b[None] + db)[:, None]
            h = torch.sin(self.omega * z) if i == 0 else torch.sin(z)
        return self.out(h) * self.out_scale


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.scale1 = nn.Parameter(torch.full((dim,), 0.1))
        self.scale2 = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
        x = x + self.scale1 * self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.scale2 * self.mlp(self.norm2(x))


class WeightReader(nn.Module):
    def __init__(self, tokens: int, features: int, dim: int, depth: int, heads: int, mlp: float):
        super().__init__()
        self.base = nn.Parameter(torch.zeros(1, tokens, features))
        self.project = nn.Linear(features, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp) for _ in range(depth)])
        self.head = nn.Linear(dim, 10)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.project((tokens + self.base) * 500.0)  # the reference's modulation scale
        return self.head(self.blocks(x).mean(1))


def tokens_of(siren: FlatSiren, offset: Tensor) -> Tensor:
    """Hidden layers' (incoming weights, bias) per neuron -> (N, depth * width, width + 1)."""
    rows = [torch.cat([dw, db[:, None]], 1).transpose(1, 2) for dw, db in siren.split(offset)[1:]]
    return torch.cat(rows, 1)


def step_unit(size: dict, steps_total: int = 1000):
    """The reference-structured meta-train step at ``size`` (benchmarks/run.py SIZES) on
    random images; returns a callable doing one step and returning the batch size."""
    torch.manual_seed(0)
    width, depth, k, side, batch = (size[key] for key in ("width", "depth", "K", "side", "batch"))
    siren = FlatSiren(width, depth, omega=10.0)
    rates = nn.ParameterList(
        nn.Parameter(torch.empty(1, siren.n_params).uniform_(0.1, 1.0)) for _ in range(k)
    )
    reader = WeightReader(
        depth * width, width + 1, size["rdim"], size["rdepth"], size["heads"], size["mlp"]
    )
    groups = [list(siren.parameters()), list(rates.parameters()), list(reader.parameters())]
    lrs = [1e-4, 1e-2, 1e-4]
    opt = torch.optim.AdamW([{"params": g, "lr": lr} for g, lr in zip(groups, lrs)], lr=0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lrs, total_steps=steps_total, pct_start=0.05
    )
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, side * side, 1, generator=gen) * 2 - 1
    labels = torch.randint(0, 10, (batch,), generator=gen)
    axis = torch.linspace(-1, 1, side)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).view(1, -1, 2)
    coords = grid.expand(batch, -1, -1)
    pixels = side * side

    def step() -> int:
        offset = torch.zeros(batch, siren.n_params, requires_grad=True)
        for j in range(k + 1):
            idx = torch.multinomial(torch.ones(batch, pixels), pixels)
            use_coords = coords.gather(1, idx[..., None].expand(-1, -1, 2))
            use_image = images.gather(1, idx[..., None])
            loss = (siren(use_coords, offset) - use_image).square().mean((1, 2))
            if j < k:
                (grad,) = torch.autograd.grad(loss.sum(), [offset], create_graph=True)
                offset = offset - rates[j] * grad
        recon = loss.mean()
        ce = F.cross_entropy(reader(tokens_of(siren, offset)), labels)
        ce.backward(retain_graph=True)
        for p in groups[0] + groups[1]:
            if p.grad is not None:
                p.grad *= 0.01  # cls_loss_weight
        recon.backward()
        for group in groups:
            torch.nn.utils.clip_grad_norm_(group, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if sched.last_epoch + 1 < steps_total:
            sched.step()
        return batch

    return step
