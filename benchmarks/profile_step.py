"""Where one meta-training step's time goes, at config/fashion_study.yaml's size.

    python benchmarks/profile_step.py                 # 2 threads, 10 profiled steps
    python benchmarks/profile_step.py --threads 1 --steps 20

torch.profiler over whole steps (inner loop with create_graph, reader, backward, clip,
AdamW) after warm-up steps; prints the operators with the most self CPU time and the share
of the step spent in the SIREN part (inner loop, reconstruction, tokens, and their
backward) versus the rest. Not in CI.
"""

from __future__ import annotations

import argparse
import time

import torch
from run import _size, build, images  # benchmarks/run.py: the same model builder
from torch.profiler import ProfilerActivity, profile

FASHION_STUDY = _size(32, 2, 3, 64, 2, 4, 64, 28, 0, mlp=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from inrroute.model import training_step
    from inrroute.siren import reconstruction_loss

    cfg, model = build(FASHION_STUDY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = images(FASHION_STUDY["batch"], FASHION_STUDY["side"])

    def step() -> None:
        loss = training_step(model, x, y, cfg).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def siren_part() -> None:
        phi, targets = model.fit(x, create_graph=True)
        loss = reconstruction_loss(model.reconstruct(phi), targets).sum()
        (loss + model.tokens(phi).square().sum()).backward()

    def seconds(fn) -> float:
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return (time.perf_counter() - start) / args.steps

    whole, siren = seconds(step), seconds(siren_part)
    print(f"threads {args.threads}, batch {FASHION_STUDY['batch']}, 28 x 28, K 3:")
    print(f"  whole step   {whole * 1000:7.1f} ms  ({whole / len(x) * 1000:.2f} ms per image)")
    print(f"  SIREN part   {siren * 1000:7.1f} ms  ({siren / whole:.0%} of the step)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
