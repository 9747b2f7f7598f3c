"""How much half-precision phi changes the results: the same runs read at float32 and at
the precision fitted.nc stores (float32 bit-rounded to float16's 11 bits, held as float16).

    snakemake --configfile config/smoke.yaml --cores 2 results/smoke/summary.nc
    python benchmarks/precision.py results/smoke

For every run under the folder: the model refits its test and train images in memory at
float32 (as the fit stage did before), then the trained reader's test accuracy and the
geometry metrics are computed from those tokens and from the stored fitted.nc. Prints one
row per run and metric, and the largest absolute difference per metric.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from inrroute.data import to_float
from inrroute.fitting import fit_batches
from inrroute.io import fitted_split, open_netcdf, read_netcdf
from inrroute.model import load_model
from inrroute.probes import geometry_metrics
from inrroute.reading import predict


def metrics(model, phi_train, y_train, phi_test, y_test, k, seed):
    tokens = torch.from_numpy(phi_test)
    acc = float((predict(model.reader, tokens, torch.device("cpu")) == y_test).mean())
    geo = geometry_metrics(
        phi_train.reshape(len(phi_train), -1).astype(np.float32),
        y_train,
        phi_test.reshape(len(phi_test), -1).astype(np.float32),
        y_test,
        k=k,
        seed=seed,
    )
    return {"reader_accuracy": acc, **geo}


def main(folder: str, k: int = 5) -> None:
    torch.set_num_threads(1)
    root = Path(folder)
    diffs: dict[str, list[float]] = {}
    for fitted_path in sorted(root.rglob("fitted.nc")):
        run = fitted_path.parent
        model = load_model(run / "model.pt")
        dataset = run.parts[-3]
        staged = read_netcdf(root / "data" / f"{dataset}.nc")
        seed = model.spec.seed
        with open_netcdf(fitted_path) as fitted:
            half = [fitted_split(fitted, s) for s in ("train", "test")]
        # float32: refit the same images (fitted.nc's train sample is all train here)
        full = []
        for split in ("train", "test"):
            mask = staged["split"].values == split
            tokens, _ = fit_batches(model, to_float(staged["images"].values[mask]), 256, torch.device("cpu"))  # fmt: skip
            full.append(tokens.reshape(len(tokens), -1, tokens.shape[-1]).numpy())
        a = metrics(model, full[0], half[0][1], full[1], half[1][1], k, seed)
        b = metrics(model, half[0][0], half[0][1], half[1][0], half[1][1], k, seed)
        for key in a:
            diffs.setdefault(key, []).append(b[key] - a[key])
            print(f"{run.relative_to(root)}  {key:<24} float32 {a[key]:.4f}  half {b[key]:.4f}")
    print("\nlargest |half - float32| over runs:")
    for key, d in diffs.items():
        print(f"  {key:<24} {max(abs(x) for x in d):.4f}  (mean {np.mean(d):+.4f})")


if __name__ == "__main__":
    main(*sys.argv[1:2])
