"""The tiny digits study the CLI and reliability tests train for real (seconds per run).

config/smoke.yaml's sizes; 200 train images / batch 8 = 25 steps per epoch, a checkpoint
every 4 steps, so most checkpoints fall mid-epoch.
"""

from __future__ import annotations

from pathlib import Path

import yaml

COMBO = "cluster1_route1_biasroute1_densefit1"  # every factor on: every code path runs
TINY = {
    "datasets": ["digits"],
    "seeds": [0, 1],
    "combinations": [COMBO],
    "caps": {"digits": {"train": 200, "test": 100}},
    "model": {"width": 8, "depth": 1, "inner_steps": 2},
    "reader": {"dim": 16, "depth": 1, "heads": 2},
    "training": {"epochs": 4, "batch_size": 8, "lr": 0.003, "checkpoint_every": 4},
    "factors": {"bias_route_hidden": 8},
    "probes": {"knn_k": 5, "intervention_draws": 2, "fresh_reader_epochs": 1},
    "stats": {"bootstrap": 50},
}
STEPS_PER_EPOCH = 25


def write_config(path: Path, results: Path, **changes) -> Path:
    """TINY with ``results_dir`` and ``changes`` (a dict value updates that section)."""
    data = {**TINY, "results_dir": str(results)}
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
