"""The MWT model of one run: shared SIREN anchor, Meta-SGD schedule and reader, and its losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Combination, StudyConfig
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


class MWT(nn.Module):
    """theta + alpha + output layer + reader for one (dataset, combination)."""

    def __init__(
        self,
        cfg: StudyConfig,
        combo: Combination,
        shape: ImageShape,
        n_classes: int,
        seed: int,
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        m = cfg.model
        self.combo, self.shape, self.depth = combo, shape, m.depth
        self.siren = SharedSiren(m, shape.channels, gen)
        steps = m.inner_steps * (cfg.factors.dense_multiplier if combo.dense_fit else 1)
        self.alphas = init_alphas(self.siren.theta, steps, m.alpha_init_low, m.alpha_init_high, gen)
        # The reader's own init draws from the global RNG (nn.Linear); seed it here so a
        # run is reproducible from (seed) alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.reader = Reader(
                n_tokens=m.depth * m.width,
                token_dim=m.width + 1,
                n_classes=n_classes,
                cfg=cfg.reader,
                route=combo.route,
                bias_route=combo.bias_route,
                bias_route_hidden=cfg.factors.bias_route_hidden,
            )
        self.register_buffer("coords", coordinate_grid(shape.height, shape.width), False)
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
    loss: Tensor
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
    loss = ce + mse.mean()
    cluster = tokens.new_zeros(())
    if model.combo.cluster:
        # On phi itself, so it reaches theta and alpha and never the reader.
        cluster = supervised_contrastive(tokens.flatten(1), labels, cfg.factors.tau)
        loss = loss + cfg.factors.lambda_c * cluster
    with torch.no_grad():
        correct = int((logits.argmax(1) == labels).sum())
        psnr_sum = float(psnr(pred.detach(), targets).sum())
    return StepOutput(loss, ce.detach(), mse.mean().detach(), cluster.detach(), correct, psnr_sum)
