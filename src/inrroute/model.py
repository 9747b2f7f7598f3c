"""The MWT model of one run: shared SIREN anchor, Meta-SGD schedule and reader, and its losses.

A model is built from a small :class:`ModelSpec` (SIREN, inner loop, reader, factor
switches, image shape, classes, seed), never from the whole study config. ``model.pt``
stores the spec beside the weights, so a model loads without the config that trained it
and a renamed config key cannot break old models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Combination, ModelConfig, ReaderConfig, StudyConfig
from .errors import InputError
from .io import load_torch, save_torch
from .reader import Reader, scale_grad
from .siren import (
    SharedSiren,
    coordinate_grid,
    images_to_targets,
    init_alphas,
    inner_loop,
    phi_to_tokens,
    psnr,
    reconstruction_loss,
)


@dataclass(frozen=True)
class ImageShape:
    channels: int
    height: int
    width: int


MODEL_FORMAT = 2  # version of model.pt's layout; 1 stored the whole study config


@dataclass(frozen=True)
class ModelSpec:
    """What fixes a model's architecture and initialisation (saved in model.pt)."""

    siren: ModelConfig
    reader: ReaderConfig
    combination: str
    bias_route_hidden: int
    dense_multiplier: int
    shape: ImageShape
    n_classes: int
    seed: int

    @classmethod
    def from_config(
        cls, cfg: StudyConfig, combo: Combination, shape: ImageShape, n_classes: int, seed: int
    ) -> ModelSpec:
        return cls(
            siren=cfg.model,
            reader=cfg.reader,
            combination=combo.name,
            bias_route_hidden=cfg.factors.bias_route_hidden,
            dense_multiplier=cfg.factors.dense_multiplier,
            shape=shape,
            n_classes=n_classes,
            seed=seed,
        )

    @property
    def combo(self) -> Combination:
        return Combination.parse(self.combination)

    @property
    def inner_steps(self) -> int:
        return self.siren.inner_steps * (self.dense_multiplier if self.combo.dense_fit else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            siren=ModelConfig(**d["siren"]),
            reader=ReaderConfig(**d["reader"]),
            combination=d["combination"],
            bias_route_hidden=int(d["bias_route_hidden"]),
            dense_multiplier=int(d["dense_multiplier"]),
            shape=ImageShape(**d["shape"]),
            n_classes=int(d["n_classes"]),
            seed=int(d["seed"]),
        )


def build_reader(spec: ModelSpec, reader: ReaderConfig | None = None) -> Reader:
    """The reader of ``spec`` (or of the same shape with another ``reader`` config)."""
    return Reader(
        n_tokens=spec.siren.depth * spec.siren.width,
        token_dim=spec.siren.width + 1,
        n_classes=spec.n_classes,
        cfg=reader or spec.reader,
        route=spec.combo.route,
        bias_route=spec.combo.bias_route,
        bias_route_hidden=spec.bias_route_hidden,
    )


class MWT(nn.Module):
    """theta + alpha + output layer + reader for one (dataset, combination)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        gen = torch.Generator().manual_seed(spec.seed)
        m = spec.siren
        self.spec = spec
        self.combo, self.shape, self.depth = spec.combo, spec.shape, m.depth
        self.siren = SharedSiren(m, spec.shape.channels, gen)
        self.alphas = init_alphas(
            self.siren.theta, spec.inner_steps, m.alpha_init_low, m.alpha_init_high, gen
        )
        # The reader's own init draws from the global RNG (nn.Linear); seed it here so a
        # run is reproducible from (seed) alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            self.reader = build_reader(spec)
        self.register_buffer("coords", coordinate_grid(spec.shape.height, spec.shape.width), False)
        # Inner-loop gradient: the hand-written SIREN backward (exact, faster) or, with
        # False, torch.autograd.grad. Not part of the state dict.
        self.analytic_inner_grad = True

    @property
    def inner_steps(self) -> int:
        return self.alphas[0].shape[0]

    def fit(self, images: Tensor, create_graph: bool) -> tuple[list[Tensor], Tensor]:
        """Inner loop on a batch of images in [-1, 1] -> (phi, targets)."""
        targets = images_to_targets(images)
        phi = inner_loop(
            self.siren,
            self.alphas,
            self.coords,
            targets,
            create_graph,
            analytic=self.analytic_inner_grad,
        )
        return phi, targets

    def tokens(self, phi: list[Tensor]) -> Tensor:
        """(B, depth * width, width + 1) reader input."""
        t = phi_to_tokens(phi, self.depth)
        return t.flatten(1, 2)

    def reconstruct(self, phi: list[Tensor]) -> Tensor:
        return self.siren(self.coords, phi)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "reader": list(self.reader.parameters()),
            "siren": list(self.siren.parameters()),
            "alpha": list(self.alphas.parameters()),
        }


def supervised_contrastive(z: Tensor, labels: Tensor, tau: float) -> Tensor:
    """SupCon loss of L2-normalised embeddings z (B, D); anchors without positives skipped."""
    z = F.normalize(z, dim=1)
    sim = z @ z.T / tau
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    if not has.any():
        return z.new_zeros(())
    mean_log_pos = (log_prob * pos).sum(dim=1)[has] / n_pos[has]
    return -mean_log_pos.mean()


@dataclass
class StepOutput:
    loss: Tensor  # the whole objective, with its graph: objective + cluster_term
    objective: Tensor  # cross-entropy + reconstruction MSE, with its graph
    cluster_term: Tensor | None  # lambda_c * SupCon on phi, with its graph (cluster runs)
    ce: Tensor
    mse: Tensor
    cluster: Tensor
    correct: int
    psnr_sum: float


def training_step(
    model: MWT, images: Tensor, labels: Tensor, cfg: StudyConfig, autocast: bool = False
) -> StepOutput:
    """Forward pass of the MWT objective (DESIGN 2, plus the cluster factor of DESIGN 3)."""
    phi, targets = model.fit(images, create_graph=True)
    pred = model.reconstruct(phi)
    mse = reconstruction_loss(pred, targets)
    tokens = model.tokens(phi)
    # Reader gets the full CE gradient; theta/alpha/output only cls_loss_weight of it.
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model.reader(scale_grad(tokens, cfg.training.cls_loss_weight))
    ce = F.cross_entropy(logits.float(), labels)
    objective = ce + mse.mean()
    cluster, term = tokens.new_zeros(()), None
    if model.combo.cluster:
        cluster = supervised_contrastive(tokens.flatten(1), labels, cfg.factors.tau)
        term = cfg.factors.lambda_c * cluster
    loss = objective if term is None else objective + term
    with torch.no_grad():
        correct = int((logits.argmax(1) == labels).sum())
        psnr_sum = float(psnr(pred.detach(), targets).sum())
    return StepOutput(
        loss, objective, term, ce.detach(), mse.mean().detach(), cluster.detach(), correct, psnr_sum
    )


def backward(model: MWT, out: StepOutput) -> None:
    """Gradients of the step's loss into ``.grad``, with the cluster loss reaching theta and
    alpha only (DESIGN 3). phi depends on the output layer through the inner loop, so one
    backward of the whole loss would also train the output layer towards clustering; the
    cluster term's gradient is therefore taken for theta and alpha alone."""
    if out.cluster_term is None or not out.cluster_term.requires_grad:
        out.objective.backward()  # (no anchor with a positive in the batch: SupCon is 0)
        return
    targets = [*model.siren.theta, *model.alphas.parameters()]
    grads = torch.autograd.grad(out.cluster_term, targets, retain_graph=True, allow_unused=True)
    out.objective.backward()
    for param, grad in zip(targets, grads, strict=True):
        if grad is not None:
            param.grad = grad if param.grad is None else param.grad + grad


def save_model(model: MWT, path: str | Path, provenance: dict[str, Any] | None = None) -> None:
    """model.pt: format, spec, weights, and what made it (``inrroute provenance`` prints it)."""
    save_torch(
        {
            "format": MODEL_FORMAT,
            "spec": model.spec.to_dict(),
            "state_dict": model.state_dict(),
            "provenance": provenance or {},
        },
        path,
    )


def _spec_of(blob: dict[str, Any], path: str | Path) -> ModelSpec:
    """The spec of a model.pt of this format or of format 1 (whole study config inside)."""
    try:
        if blob.get("format") == MODEL_FORMAT:
            return ModelSpec.from_dict(blob["spec"])
        meta = blob["meta"]  # format 1
        config = meta["config"]
        return ModelSpec(
            siren=ModelConfig(**config["model"]),
            reader=ReaderConfig(**config["reader"]),
            combination=meta["combo"],
            bias_route_hidden=int(config["factors"]["bias_route_hidden"]),
            dense_multiplier=int(config["factors"]["dense_multiplier"]),
            shape=ImageShape(**meta["shape"]),
            n_classes=int(meta["n_classes"]),
            seed=int(meta["seed"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{path} is a model.pt this version of inrroute cannot read (format "
            f"{blob.get('format', 1)!r}, expected {MODEL_FORMAT}; {type(exc).__name__}: {exc}). "
            "Re-run the meta_train rule for this run."
        ) from exc


def load_model(path: str | Path, device: torch.device | str = "cpu") -> MWT:
    """Rebuild a trained model from ``model.pt``; its spec is ``model.spec``."""
    blob = load_torch(path, remedy="Re-run the meta_train rule for this run.")
    model = MWT(_spec_of(blob, path))
    try:
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise InputError(
            f"{path}: the weights do not match the saved spec ({exc}). "
            "Re-run the meta_train rule for this run."
        ) from exc
    # What made it (config record, device, seconds), for the outputs made from it.
    model.provenance = dict(blob.get("provenance", {}))
    return model.to(device).eval()
