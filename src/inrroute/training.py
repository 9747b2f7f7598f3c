"""Meta-training: theta, alpha and the reader end to end, resumable and signal-safe.

A checkpoint (``checkpoint.pt`` beside ``model.pt``) holds everything the loop state
depends on: weights, optimizer and schedule, position in the epoch, the epoch's running
sums and the log so far. The batch order of an epoch is a pure function of (seed, epoch),
so a resumed run on CPU ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import pandas as pd
import torch
from tqdm import tqdm

from .config import Combination, StudyConfig
from .data import ImageSet
from .errors import InputError, Interrupted, NumericalError
from .io import load_torch, remove_stale_temps, save_torch, write_csv
from .model import MWT, ImageShape, ModelSpec, backward, save_model, training_step

log = logging.getLogger("inrroute")
LOG_COLUMNS = ["epoch", "loss", "ce", "mse", "cluster", "train_accuracy", "psnr", "lr", "seconds"]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Batch order of one epoch, a pure function of (seed, epoch) so resuming can replay it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def build_optimizer(
    model: MWT, cfg: StudyConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    t = cfg.training
    groups = model.param_groups()
    lrs = {"reader": t.lr, "siren": t.lr, "alpha": t.alpha_lr}
    # Weight decay would shrink the learned step sizes towards 0, so alpha gets none.
    decay = {"reader": t.weight_decay, "siren": t.weight_decay, "alpha": 0.0}
    opt = torch.optim.AdamW(
        [{"params": groups[k], "lr": lrs[k], "weight_decay": decay[k]} for k in groups]
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[lrs[k] for k in groups], total_steps=max(total_steps, 1)
    )
    return opt, sched


@dataclass
class LoopState:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    log: list[dict[str, float]] = field(default_factory=list)


class GracefulStop:
    """Turns SIGTERM (Slurm's time limit, scancel) into a checkpoint-then-exit request."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Self:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def training_key(cfg: StudyConfig) -> dict[str, Any]:
    """The settings beyond the model spec that change what training computes.

    A checkpoint resumes only when its spec and this key equal the current run's; threads
    and the checkpoint interval do not change the result.
    """
    training = asdict(cfg.training)
    for key in ("threads", "checkpoint_every"):
        training.pop(key)
    return {
        "training": training,
        "factors": asdict(cfg.factors),
        "bf16": cfg.bf16,
    }


def _check_finite(values: dict[str, torch.Tensor], epoch: int, step: int, ckpt: Path) -> None:
    for name, value in values.items():
        if not torch.isfinite(value).all():
            kept = (
                f"The last good checkpoint is kept at {ckpt}"
                if ckpt.exists()
                else f"No checkpoint was written yet ({ckpt})"
            )
            raise NumericalError(
                f"{name} is not finite (NaN/Inf) at epoch {epoch}, step {step} of the epoch; "
                f"training stopped. {kept} (lower training.lr / model.alpha_init_high, "
                "or check the data)."
            )


def meta_train(
    cfg: StudyConfig,
    combo: Combination,
    seed: int,
    train: ImageSet,
    out_dir: str | Path,
    device: torch.device,
    progress: bool = True,
    max_steps: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Train one run; resumes from ``out_dir/checkpoint.pt`` when it exists.

    ``max_steps`` stops after that many optimizer steps in this call (with a checkpoint),
    which the tests use to interrupt a run at a precise point.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, model_path = out_dir / "checkpoint.pt", out_dir / "model.pt"
    # A job killed while writing leaves a temporary; this job owns the run folder.
    remove_stale_temps(out_dir, ("checkpoint.pt", "model.pt", "train_log.csv"))
    t = cfg.training
    shape = ImageShape(*train.images.shape[1:])
    n_classes = int(train.labels.max()) + 1
    spec = ModelSpec.from_config(cfg, combo, shape, n_classes, seed)
    resume_key = {"spec": spec.to_dict(), **training_key(cfg)}
    model = MWT(spec).to(device)
    n = len(train)
    steps_per_epoch = math.ceil(n / t.batch_size)
    opt, sched = build_optimizer(model, cfg, t.epochs * steps_per_epoch)
    state = LoopState()
    if ckpt_path.exists():
        blob = load_torch(ckpt_path, remedy="Delete it to restart this run from scratch.")
        if blob.get("resume_key") != resume_key:
            raise InputError(
                f"{ckpt_path} belongs to a different configuration, seed or combination "
                "than this run; delete it to restart this run from scratch."
            )
        model.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        state = LoopState(**blob["loop"])
        # Each attempt overwrites the rule log, so every attempt states whether it resumed.
        log.info(
            "resuming from %s at epoch %d, step %d of the epoch (global step %d)",
            ckpt_path,
            state.epoch,
            state.step_in_epoch,
            state.global_step,
        )

    def checkpoint() -> None:
        save_torch(
            {
                "resume_key": resume_key,
                "state_dict": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "loop": asdict(state),
            },
            ckpt_path,
        )

    images, labels = train.images.to(device), train.labels.to(device)
    autocast = cfg.bf16 and device.type == "cuda"
    steps_this_call = 0
    model.train()
    bar = tqdm(
        total=t.epochs * steps_per_epoch,
        initial=state.global_step,
        disable=not progress,
        desc=f"meta-train {combo.name} seed {seed}",
        unit="step",
    )
    with GracefulStop() as stop:
        while state.epoch < t.epochs:
            order = epoch_order(n, seed, state.epoch)
            tick = time.perf_counter()
            while state.step_in_epoch < steps_per_epoch:
                idx = order[
                    state.step_in_epoch * t.batch_size : (state.step_in_epoch + 1) * t.batch_size
                ]
                out = training_step(model, images[idx], labels[idx], cfg, autocast)
                _check_finite(
                    {"loss": out.loss, "cross-entropy": out.ce, "reconstruction MSE": out.mse},
                    state.epoch,
                    state.step_in_epoch,
                    ckpt_path,
                )
                opt.zero_grad(set_to_none=True)
                backward(model, out)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                # Checked before the step, so no non-finite weight reaches a checkpoint.
                _check_finite(
                    {"gradient norm": grad_norm}, state.epoch, state.step_in_epoch, ckpt_path
                )
                opt.step()
                sched.step()
                for key, value in (
                    ("loss", float(out.loss.detach()) * len(idx)),
                    ("ce", float(out.ce) * len(idx)),
                    ("mse", float(out.mse) * len(idx)),
                    ("cluster", float(out.cluster) * len(idx)),
                    ("correct", out.correct),
                    ("psnr", out.psnr_sum),
                    ("n", len(idx)),
                ):
                    state.sums[key] = state.sums.get(key, 0.0) + value
                state.step_in_epoch += 1
                state.global_step += 1
                steps_this_call += 1
                bar.update(1)
                now = time.perf_counter()
                state.seconds += now - tick
                tick = now
                if stop.requested or (max_steps is not None and steps_this_call >= max_steps):
                    checkpoint()
                    bar.close()
                    raise Interrupted(
                        f"stopped at epoch {state.epoch} step {state.step_in_epoch}; "
                        f"checkpoint written to {ckpt_path}"
                    )
                if state.global_step % t.checkpoint_every == 0:
                    checkpoint()
            s = state.sums
            state.log.append(
                {
                    "epoch": state.epoch,
                    "loss": s["loss"] / s["n"],
                    "ce": s["ce"] / s["n"],
                    "mse": s["mse"] / s["n"],
                    "cluster": s["cluster"] / s["n"],
                    "train_accuracy": s["correct"] / s["n"],
                    "psnr": s["psnr"] / s["n"],
                    "lr": sched.get_last_lr()[0],
                    "seconds": state.seconds,
                }
            )
            state.epoch, state.step_in_epoch, state.sums = state.epoch + 1, 0, {}
            write_csv(pd.DataFrame(state.log, columns=LOG_COLUMNS), out_dir / "train_log.csv")
            bar.set_postfix(acc=f"{state.log[-1]['train_accuracy']:.3f}")
            checkpoint()
    bar.close()
    record = dict(provenance or {})
    record.update(inrroute_device=str(device), inrroute_seconds=round(state.seconds, 3))
    save_model(model, model_path, record)
    return model_path
