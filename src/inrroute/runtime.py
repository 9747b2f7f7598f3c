"""Where a job runs: device and thread count, chosen from config and what the job was given."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("inrroute")


def job_cpus() -> int:
    """CPUs this process may use: Slurm's allocation when inside a job, else the affinity mask."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0))


def select_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {requested!r} is not one of 'auto', 'cpu', 'cuda'")
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise ConfigError(
            "config key 'device' has value 'cuda' but no CUDA device is visible in this job; "
            "allowed here: 'auto' or 'cpu' (or run the job on a GPU node)"
        )
    device = torch.device(
        "cuda" if requested == "cuda" or (requested == "auto" and cuda) else "cpu"
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    log.info("device: %s (%s; requested %r)", device, name, requested)
    return device


def configure_threads(threads: int | None, torch: bool = True) -> int:
    """Set the compute threads to the config value or the job's CPUs; return the number.

    ``torch=True``: torch's intra-op threads. ``False`` (stages without torch, whose
    start-up it would only slow): the BLAS/OpenMP pools numpy and scikit-learn use.
    """
    n = threads or job_cpus()
    if torch:
        import torch as _torch

        _torch.set_num_threads(n)
    else:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    log.info("%s threads: %d", "torch" if torch else "BLAS/OpenMP", n)
    return n
