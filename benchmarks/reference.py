"""The straightforward meta-train step and fit, as a first version would write them.

This is the yardstick of ``benchmarks/run.py`` and the oracle of ``tests/test_fastpath.py``:
one image at a time, its SIREN parameters as a Python list of tensors, a Python loop over
the layers, and ``torch.autograd.grad(create_graph=True)`` for the inner-loop gradient.
It reads the weights of an :class:`inrroute.model.MWT` (theta, alpha, output layer,
reader) and computes the same numbers as :func:`inrroute.model.training_step` and
:func:`inrroute.fitting.fit_batches` (DESIGN section 2), only slower.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inrroute.config import StudyConfig
from inrroute.model import MWT
from inrroute.siren import images_to_targets, psnr


def scaled_gradient(x: Tensor, weight: float) -> Tensor:
    """x unchanged forward; its gradient multiplied by ``weight`` backward (a tensor hook,
    not the package's autograd Function)."""
    y = x.clone()
    if y.requires_grad:
        y.register_hook(lambda grad: grad * weight)
    return y


def supcon(z: Tensor, labels: Tensor, tau: float) -> Tensor:
    """Supervised contrastive loss written anchor by anchor from its definition: for each
    anchor with positives, minus the mean over its positives p of
    log(exp(s_ap / tau) / sum over a' != a of exp(s_aa' / tau)), s = cosine similarity."""
    z = z / z.norm(dim=1, keepdim=True)
    per_anchor = []
    for a in range(len(z)):
        others = [b for b in range(len(z)) if b != a]
        positives = [b for b in others if labels[b] == labels[a]]
        if not positives:
            continue
        log_denominator = torch.logsumexp(torch.stack([z[a] @ z[b] / tau for b in others]), 0)
        terms = [z[a] @ z[p] / tau - log_denominator for p in positives]
        per_anchor.append(-torch.stack(terms).mean())
    return torch.stack(per_anchor).mean() if per_anchor else z.new_zeros(())


def siren_one(model: MWT, params: list[Tensor]) -> Tensor:
    """SIREN(params) of one image at the model's coordinates -> (P, C)."""
    siren = model.siren
    h = model.coords
    for layer in range(siren.depth + 1):
        w, b = params[2 * layer], params[2 * layer + 1]
        z = h @ w.T + b
        h = torch.sin(siren.omega * z) if layer == 0 else torch.sin(z)
    return (h @ siren.out_w.T + siren.out_b) * siren.out_scale


def fit_one(model: MWT, target: Tensor, create_graph: bool) -> list[Tensor]:
    """K Meta-SGD steps for one image (target (P, C)) -> its offsets phi."""
    theta = list(model.siren.theta)
    phi = [torch.zeros_like(t, requires_grad=True) for t in theta]
    with torch.enable_grad():
        for j in range(model.inner_steps):
            params = [t + p for t, p in zip(theta, phi, strict=True)]
            loss = ((siren_one(model, params) - target) ** 2).mean()
            grads = torch.autograd.grad(loss, phi, create_graph=create_graph)
            phi = [p - a[j] * g for p, a, g in zip(phi, model.alphas, grads, strict=True)]
            if not create_graph:
                phi = [p.detach().requires_grad_(True) for p in phi]
    return phi if create_graph else [p.detach() for p in phi]


def tokens_one(model: MWT, phi: list[Tensor]) -> Tensor:
    """Read layers' offsets of one image -> (depth * width, width + 1), bias column last."""
    rows = []
    for layer in range(1, model.depth + 1):
        rows.append(torch.cat([phi[2 * layer], phi[2 * layer + 1][:, None]], dim=1))
    return torch.cat(rows, dim=0)


def training_step(
    model: MWT, images: Tensor, labels: Tensor, cfg: StudyConfig
) -> dict[str, Tensor]:
    """The meta-train objective of :func:`inrroute.model.training_step`, image by image."""
    targets = images_to_targets(images)
    tokens, mses = [], []
    for i in range(len(images)):
        phi = fit_one(model, targets[i], create_graph=True)
        params = [t + p for t, p in zip(model.siren.theta, phi, strict=True)]
        mses.append(((siren_one(model, params) - targets[i]) ** 2).mean())
        tokens.append(tokens_one(model, phi))
    tokens_b, mse = torch.stack(tokens), torch.stack(mses)
    logits = model.reader(scaled_gradient(tokens_b, cfg.training.cls_loss_weight))
    ce = F.cross_entropy(logits.float(), labels)  # as the package: CE in float32
    loss = ce + mse.mean()
    cluster = tokens_b.new_zeros(())
    if model.combo.cluster:
        cluster = supcon(tokens_b.flatten(1), labels, cfg.factors.tau)
        loss = loss + cfg.factors.lambda_c * cluster
    return {"loss": loss, "ce": ce, "mse": mse.mean(), "cluster": cluster, "logits": logits}


def fit_images(model: MWT, images: Tensor) -> tuple[Tensor, Tensor]:
    """First-order fit one image at a time -> tokens (N, depth, width, width + 1), PSNR (N,)."""
    targets = images_to_targets(images)
    tokens, scores = [], []
    for i in range(len(images)):
        phi = fit_one(model, targets[i], create_graph=False)
        with torch.no_grad():
            params = [t + p for t, p in zip(model.siren.theta, phi, strict=True)]
            pred = siren_one(model, params)
            scores.append(psnr(pred[None], targets[i][None])[0])
        tokens.append(tokens_one(model, phi).view(model.depth, -1, phi[2].shape[-1] + 1))
    return torch.stack(tokens), torch.stack(scores)
