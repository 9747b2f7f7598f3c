"""The reader: a pre-norm transformer that classifies SIREN weight tokens (DESIGN 2, 3).

Two factor switches change its shape: ``route`` prepends a learned class token and reads
the logits from its final state (instead of mean pooling); ``bias_route`` sends the bias
column of all read layers through a small MLP into one extra token appended at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ReaderConfig


class ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``weight`` on the way back.

    Lets the reader take the full cross-entropy gradient while theta and alpha receive
    only ``cls_loss_weight`` times it, in one backward pass.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.weight, None


def scale_grad(x: Tensor, weight: float) -> Tensor:
    return ScaleGrad.apply(x, weight)


class Block(nn.Module):
    """Pre-norm transformer block: attention + MLP, each with a learnable layer scale."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layer_scale: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.gamma1 * self.attn_out(a.transpose(1, 2).reshape(b, s, d))
        return x + self.gamma2 * self.mlp(self.norm2(x))


class Reader(nn.Module):
    """Tokens (B, T, F) -> logits (B, n_classes)."""

    def __init__(
        self,
        n_tokens: int,
        token_dim: int,
        n_classes: int,
        cfg: ReaderConfig,
        route: bool,
        bias_route: bool,
        bias_route_hidden: int,
    ):
        super().__init__()
        self.route, self.bias_route = route, bias_route
        self.modulation_scale = cfg.modulation_scale
        self.base = nn.Parameter(torch.zeros(n_tokens, token_dim))
        self.proj = nn.Linear(token_dim, cfg.dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, cfg.dim) * 0.02) if route else None
        self.bias_mlp = (
            nn.Sequential(
                nn.Linear(n_tokens, bias_route_hidden),
                nn.GELU(),
                nn.Linear(bias_route_hidden, cfg.dim),
            )
            if bias_route
            else None
        )
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.layer_scale) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, n_classes)

    def depth_names(self) -> list[str]:
        return ["input", "projection"] + [f"block{i + 1}" for i in range(len(self.blocks))]

    def modulate(self, tokens: Tensor) -> Tensor:
        """(tokens + learned base) * modulation scale: the reader's input."""
        return (tokens + self.base) * self.modulation_scale

    def sequence(self, modulated: Tensor) -> Tensor:
        """Projected tokens, with the class token (route) and bias token (bias_route)."""
        x = self.proj(modulated)
        parts = [x]
        if self.cls_token is not None:
            parts.insert(0, self.cls_token.expand(x.shape[0], -1, -1))
        if self.bias_mlp is not None:
            # Fed only by the bias column, so this token is an explicit bias route.
            parts.append(self.bias_mlp(modulated[..., -1]).unsqueeze(1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else x

    def pool(self, x: Tensor) -> Tensor:
        return x[:, 0] if self.route else x.mean(dim=1)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.sequence(self.modulate(tokens))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(self.pool(x)))

    @torch.no_grad()
    def depth_representations(self, tokens: Tensor) -> list[Tensor]:
        """Pooled representation at every depth (DESIGN 4, token flow).

        Every depth is pooled the same way, by the mean over all sequence positions, so
        the curve compares like with like across depths and across route on/off (a class
        token's state is a constant before the first block).
        """
        m = self.modulate(tokens)
        x = self.sequence(m)
        reps = [m.mean(dim=1), x.mean(dim=1)]
        for block in self.blocks:
            x = block(x)
            reps.append(x.mean(dim=1))
        return reps
