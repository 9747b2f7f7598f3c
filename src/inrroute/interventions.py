"""Bias-column interventions on test tokens, with single-column controls (DESIGN 4).

Tokens are (n, tokens, features) phi offsets; the last feature is the bias column. Every
function returns a new tensor and changes only what its name says.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from .config import StudyConfig
from .fitting import tokens_of
from .model import MWT
from .reader import Reader
from .reading import predict
from .study import INTERVENTIONS
from .study import INTERVENTIONS_CONTROL as CONTROLS


def zero_column(tokens: torch.Tensor, col: int) -> torch.Tensor:
    out = tokens.clone()
    out[..., col] = 0.0
    return out


def shuffle_column(tokens: torch.Tensor, col: int, perm: torch.Tensor) -> torch.Tensor:
    """Column ``col`` of image i comes from image perm[i]; each token position keeps its
    multiset of values over images (same marginal, sample information removed)."""
    out = tokens.clone()
    out[..., col] = tokens[perm][..., col]
    return out


def mean_column(tokens: torch.Tensor, col: int) -> torch.Tensor:
    out = tokens.clone()
    out[..., col] = tokens[..., col].mean(dim=0, keepdim=True)
    return out


def only_column(tokens: torch.Tensor, col: int) -> torch.Tensor:
    out = torch.zeros_like(tokens)
    out[..., col] = tokens[..., col]
    return out


def bias_interventions(perm: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {
        "none": lambda t: t,
        "bias_zero": lambda t: zero_column(t, -1),
        "bias_shuffle": lambda t: shuffle_column(t, -1, perm),
        "bias_mean": lambda t: mean_column(t, -1),
        "bias_only": lambda t: only_column(t, -1),
    }


def intervention_dataset(
    reader: Reader,
    tokens: torch.Tensor,
    labels: np.ndarray,
    draws: int,
    seed: int,
    device: torch.device,
) -> xr.Dataset:
    """Accuracy under every intervention; controls averaged over ``draws`` random columns."""
    gen = torch.Generator().manual_seed(seed)
    n, _, features = tokens.shape

    def acc(t: torch.Tensor) -> float:
        return float((predict(reader, t, device) == labels).mean())

    accuracy = {
        name: acc(fn(tokens))
        for name, fn in bias_interventions(torch.randperm(n, generator=gen)).items()
    }
    cols = torch.randint(0, features - 1, (draws,), generator=gen)  # never the bias column
    control = np.zeros((len(CONTROLS), draws))
    for d, col in enumerate(cols.tolist()):
        control[0, d] = acc(zero_column(tokens, col))
        control[1, d] = acc(shuffle_column(tokens, col, torch.randperm(n, generator=gen)))
    accuracy["col_zero"], accuracy["col_shuffle"] = control.mean(axis=1)
    return xr.Dataset(
        {
            "accuracy": (
                "intervention",
                np.array([accuracy[k] for k in INTERVENTIONS]),
                {"units": "1", "long_name": "trained-reader test accuracy under the intervention"},
            ),
            "control_accuracy": (("control", "draw"), control, {"units": "1"}),
            "control_column": ("draw", cols.numpy()),
        },
        coords={"intervention": list(INTERVENTIONS), "control": list(CONTROLS)},
    )


def run_interventions(
    model: MWT, fitted: xr.Dataset, cfg: StudyConfig, device: torch.device
) -> xr.Dataset:
    """interventions.nc of one run: the trained reader on the intervened test tokens."""
    tokens, labels = tokens_of(fitted, "test")
    return intervention_dataset(
        model.reader, tokens, labels.numpy(), cfg.probes.intervention_draws, model.spec.seed, device
    )
