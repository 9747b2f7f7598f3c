"""Fresh reader families: classifiers of frozen phi tokens with different inductive biases.

Issue 15 / DESIGN 4: is the routing reader-dependent? Every family maps tokens
(n, T, F) -> logits (n, n_classes), with T = depth x width neuron tokens of F = width + 1
features (the bias column last), and exposes ``depth_names()`` and
``depth_representations(tokens)`` (one (n, d) tensor per depth, input first), so the
bias-column interventions (``interventions.intervention_dataset``) and the token-flow
analogue (kNN consistency per depth) apply to every family alike.

- ``transformer``: the trained reader's architecture (``model.build_reader``), today's
  fresh reader;
- ``mlp``: an MLP on the flattened tokens (no token structure);
- ``deepsets``: a permutation-invariant set reader: a per-token MLP, a mean over the
  neurons of each read layer (invariant to permuting a layer's neurons), the layers'
  pooled features concatenated, an MLP head (the NP-style invariant of Zhou et al.'s
  neural functionals, without their weight-sharing across the next layer's inputs).

A new family is one ``FAMILIES`` entry (a builder) here and its name in the schema's
``probes.reader_families`` enum. Hidden sizes follow the reader's ``dim`` (of the spec the
fresh transformer uses; 64 in the default study), so every family scales with the
configured reader; both are far cheaper than the transformer (issue 15's cost rule). The MLP and
the set reader standardise their input with statistics of the train split (per token
feature for the MLP; per feature over all tokens for the set reader, which keeps the
invariance); the transformer keeps its own learned base and modulation scale.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .config import ReaderConfig
from .model import ModelSpec, build_reader


class Standardise(nn.Module):
    """(x - mean) / std with fixed statistics (buffers) from the train split."""

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        # a constant feature keeps its (zero) deviation instead of dividing by zero
        self.register_buffer("std", torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class MLPReader(nn.Module):
    """Flattened tokens -> standardised -> [Linear, GELU] x n_hidden -> Linear."""

    def __init__(
        self, train_tokens: Tensor, n_classes: int, hidden: int, n_hidden: int = 2
    ) -> None:
        super().__init__()
        flat = train_tokens.reshape(len(train_tokens), -1).float()
        self.norm = Standardise(flat.mean(0), flat.std(0))
        dims = [flat.shape[1]] + [hidden] * n_hidden
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in itertools.pairwise(dims)
        )
        self.head = nn.Linear(dims[-1], n_classes)

    def depth_names(self) -> list[str]:
        return ["input"] + [f"hidden{i + 1}" for i in range(len(self.hidden))]

    def _states(self, tokens: Tensor) -> list[Tensor]:
        x = self.norm(tokens.reshape(len(tokens), -1))
        states = [x]
        for layer in self.hidden:
            x = layer(x)
            states.append(x)
        return states

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self._states(tokens)[-1])

    @torch.no_grad()
    def depth_representations(self, tokens: Tensor) -> list[Tensor]:
        return self._states(tokens)


class DeepSetsReader(nn.Module):
    """Per-token MLP phi, mean over each layer's neurons, concatenation over layers, MLP rho.

    Invariant to permuting the neuron tokens within a read layer.
    """

    def __init__(self, train_tokens: Tensor, n_classes: int, n_layers: int, hidden: int) -> None:
        super().__init__()
        feats = train_tokens.reshape(-1, train_tokens.shape[-1]).float()
        self.n_layers = n_layers
        self.norm = Standardise(feats.mean(0), feats.std(0))
        f = train_tokens.shape[-1]
        self.phi = nn.Sequential(nn.Linear(f, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.rho = nn.Sequential(nn.Linear(n_layers * hidden, hidden), nn.GELU())
        self.head = nn.Linear(hidden, n_classes)

    def depth_names(self) -> list[str]:
        return ["input", "set_pool", "head_hidden"]

    def _pool(self, x: Tensor) -> Tensor:
        """(n, T, d) -> (n, layers * d): the mean over each layer's neurons."""
        n, t, d = x.shape
        return x.reshape(n, self.n_layers, t // self.n_layers, d).mean(2).reshape(n, -1)

    def _states(self, tokens: Tensor) -> list[Tensor]:
        x = self.norm(tokens)
        pooled = self._pool(torch.nn.functional.gelu(self.phi(x)))
        return [self._pool(x), pooled, self.rho(pooled)]

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self._states(tokens)[-1])

    @torch.no_grad()
    def depth_representations(self, tokens: Tensor) -> list[Tensor]:
        return self._states(tokens)


# family name -> builder(spec, reader config or None, train tokens) -> module
Builder = Callable[[ModelSpec, ReaderConfig | None, Tensor], nn.Module]


def _transformer(spec: ModelSpec, reader: ReaderConfig | None, train_tokens: Tensor) -> nn.Module:
    return build_reader(spec, reader)


def _mlp(spec: ModelSpec, reader: ReaderConfig | None, train_tokens: Tensor) -> nn.Module:
    return MLPReader(train_tokens, spec.n_classes, hidden=(reader or spec.reader).dim)


def _deepsets(spec: ModelSpec, reader: ReaderConfig | None, train_tokens: Tensor) -> nn.Module:
    return DeepSetsReader(
        train_tokens, spec.n_classes, n_layers=spec.siren.depth, hidden=(reader or spec.reader).dim
    )


FAMILIES: dict[str, Builder] = {
    "transformer": _transformer,
    "mlp": _mlp,
    "deepsets": _deepsets,
}


def build_family(
    family: str, spec: ModelSpec, reader: ReaderConfig | None, train_tokens: Tensor
) -> nn.Module:
    """A fresh, untrained reader of ``family`` for tokens shaped like ``train_tokens``."""
    if family not in FAMILIES:
        raise ValueError(f"reader family {family!r} is unknown: expected one of {list(FAMILIES)}")
    return FAMILIES[family](spec, reader, train_tokens)
