"""Model selection on a validation split carved from train (never the test split).

    python benchmarks/selection.py --candidates benchmarks/candidates_digits.yaml
    python benchmarks/selection.py --candidates FILE --seeds 0 1 2 --fraction 0.2
    python benchmarks/selection.py --config config/fashion_study.yaml \
        --candidates benchmarks/candidates_fashion.yaml --only n3000_e6 --threads 1

Each candidate is a set of config changes laid over --config, which is laid over
config/config.yaml as the Snakefile does.
For every candidate x combination x seed it meta-trains on the train split minus a
stratified validation part (data.validation_split, seeded by stage_seed), fits the held-out
images and scores the trained reader on them. It prints one Markdown row per candidate:
validation accuracy (mean and minimum over seeds and combinations), seconds per run, and
whether it meets the rule written in the candidates file before the runs. Not in CI.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from inrroute.config import from_mapping
from inrroute.data import split_of, stage, validation_split
from inrroute.fitting import fit_batches
from inrroute.model import load_model
from inrroute.reading import predict
from inrroute.study import Combination
from inrroute.training import meta_train

ROOT = Path(__file__).resolve().parents[1]


def merged(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def validation_accuracy(cfg, combo: str, seed: int, fraction: float, work: Path) -> float:
    dataset = cfg.datasets[0]
    staged = stage(dataset, cfg.data_root, cfg.cap(dataset, "train"), None, cfg.stage_seed)
    fit_part, val = validation_split(split_of(staged, "train"), fraction, cfg.stage_seed)
    device = torch.device("cpu")
    path = meta_train(cfg, Combination.parse(combo), seed, fit_part, work, device, False)
    model = load_model(path)
    tokens, _ = fit_batches(model, val.images, cfg.fit.batch_size, device)
    pred = predict(model.reader, tokens.flatten(1, 2), device)
    return float(np.mean(pred == val.labels.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--candidates", required=True, help="YAML: rule, combinations, candidates")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="run these candidates (one core each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    base = merged(base, yaml.safe_load(Path(args.config).read_text()))
    spec = yaml.safe_load(Path(args.candidates).read_text())
    unknown = set(args.only or ()) - set(spec["candidates"])
    if unknown:
        parser.error(f"--only {sorted(unknown)}: not candidates of {args.candidates}")
    print(f"Rule (stated before the runs): {spec['rule']}\n")
    print("| candidate | changes | val. accuracy mean | min | s / run | CPU s / run | each run |")
    print("|---|---|---|---|---|---|---|")
    for name, change in spec["candidates"].items():
        if args.only and name not in args.only:
            continue
        cfg = from_mapping(merged(base, change or {}))
        accs, seconds, cpu = [], [], []
        for combo in spec["combinations"]:
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as work:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    accs.append(validation_accuracy(cfg, combo, seed, args.fraction, Path(work)))
                    seconds.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - start_cpu)
        print(
            f"| {name} | `{change or {}}` | {np.mean(accs):.4f} | {np.min(accs):.4f} "
            f"| {np.mean(seconds):.1f} | {np.mean(cpu):.1f} | {' '.join(f'{a:.4f}' for a in accs)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
