"""Benchmark suite: the fast hot path against the straightforward reference, in one run.

    python benchmarks/run.py --threads 1 --out b1.md   # as the workflow's jobs run (~20 min)
    python benchmarks/run.py --out b2.md               # the job's CPUs (~30 min on 2 cores)
    python benchmarks/run.py --quick                   # smoke pass, a few minutes, rough
    python benchmarks/run.py --mwt --sizes fashion_study paper   # step ratio vs MWT's structure

Not part of the test suite. Every implementation lives in its own worker process
(``--serve``), so its peak memory (``ru_maxrss``) is its own; the workers of one
comparison are alive together and take turns, one unit of work each per round, in a
rotating order, so a change in background load (the other core may be busy) hits every
implementation alike. Each figure is the median over rounds. Torch threads follow the
job's CPUs (``inrroute.runtime.job_cpus``) unless ``--threads`` says otherwise.

Measured, with the DESIGN section 2 model on random images in [-1, 1] (speed does not
depend on pixel values):

* meta-train step (inner loop with create_graph, reader, backward, clipping, AdamW) at
  ``digits`` (config/config.yaml), ``fashion`` (config/fashion.yaml's CPU model) and
  ``paper`` (config/paper.yaml: width 128, depth 4, K 6, reader 128 x 10, batch 16,
  28 x 28) size, for ``fast`` (the package: batched, analytic inner gradient),
  ``autograd`` (the package with the autograd inner gradient) and ``reference``
  (benchmarks/reference.py: one image at a time, per-layer loop, autograd);
* the SIREN part of that step alone (inner loop, reconstruction, token term, backward);
* fit throughput (images/s, first-order, as ``inrroute fit``) at the fashion size:
  batched, one image at a time, and the reference one image at a time;
* reader throughput (inference, images/s) at each size;
* ``snakemake -n`` wall time on config/config.yaml and config/paper.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _size(width, depth, k, rdim, rdepth, heads, batch, side, rounds, mlp=2.0):
    return {
        "width": width, "depth": depth, "K": k, "rdim": rdim, "rdepth": rdepth,
        "heads": heads, "batch": batch, "side": side, "rounds": rounds, "mlp": mlp,
    }  # fmt: skip


SIZES = {
    # model width, depth, K; reader dim, blocks, heads; batch; image side; timed rounds
    "digits": _size(32, 2, 2, 64, 2, 4, 32, 8, 30, mlp=1.0),  # config/config.yaml
    "fashion": _size(32, 2, 3, 64, 2, 4, 64, 28, 8),  # config/fashion.yaml
    "fashion_study": _size(32, 2, 3, 64, 2, 4, 64, 28, 10, mlp=1.0),  # fashion_study.yaml
    # config/paper.yaml, DESIGN 2; the published reader (2 heads of 64, MLP ratio 1) since
    # issue 14; the tables of issue 6 in BENCHMARKS.md were measured with 8 heads, MLP 2
    "paper": _size(128, 4, 6, 128, 10, 2, 16, 28, 5, mlp=1.0),
}
STEP_IMPLS = ("fast", "autograd", "reference")
FIT_IMPLS = {  # name: (implementation, images per unit, batch size)
    "fast, batched (256), as `inrroute fit`": ("fast", 512, 256),
    "autograd inner gradient, batched (256)": ("autograd", 512, 256),
    "fast, one image at a time": ("fast", 32, 1),
    "reference, one image at a time": ("reference", 32, 1),
}


# --------------------------------------------------------------------------- worker side


def build(size: dict, seed: int = 0):
    from inrroute.config import Combination, ModelConfig, ReaderConfig, StudyConfig, TrainingConfig
    from inrroute.model import MWT, ImageShape, ModelSpec

    cfg = StudyConfig(
        model=ModelConfig(width=size["width"], depth=size["depth"], inner_steps=size["K"]),
        reader=ReaderConfig(
            dim=size["rdim"], depth=size["rdepth"], heads=size["heads"], mlp_ratio=size["mlp"]
        ),
        training=TrainingConfig(batch_size=size["batch"]),
    )
    model = MWT(
        ModelSpec.from_config(
            cfg, Combination(), ImageShape(1, size["side"], size["side"]), 10, seed
        )
    )
    return cfg, model


def images(n: int, side: int, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, side, side, generator=gen) * 2 - 1
    return x, torch.randint(0, 10, (n,), generator=gen)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_unit(task: dict):
    """The unit of work of one measurement: a callable returning the images it handled."""
    import reference
    import torch

    from inrroute.fitting import fit_batches
    from inrroute.model import training_step
    from inrroute.siren import reconstruction_loss

    size = SIZES[task["size"]]
    kind, impl = task["kind"], task["impl"]
    if kind == "step" and impl == "mwt":  # its own modules: no package model to build
        import mwt_style

        return mwt_style.step_unit(size)

    cfg, model = build(size)
    model.analytic_inner_grad = impl != "autograd"

    if kind in ("step", "inner"):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = images(size["batch"], size["side"])

        def siren_loss() -> torch.Tensor:
            """The SIREN part of the step alone: inner loop, reconstruction, tokens."""
            if impl == "reference":
                targets = x.flatten(2).transpose(1, 2)
                loss = x.new_zeros(())
                for i in range(len(x)):
                    phi = reference.fit_one(model, targets[i], create_graph=True)
                    params = [t + p for t, p in zip(model.siren.theta, phi, strict=True)]
                    pred = reference.siren_one(model, params)
                    loss = loss + ((pred - targets[i]) ** 2).mean()
                    loss = loss + reference.tokens_one(model, phi).square().sum()
                return loss
            phi, targets = model.fit(x, create_graph=True)
            loss = reconstruction_loss(model.reconstruct(phi), targets).sum()
            return loss + model.tokens(phi).square().sum()

        def step() -> int:
            if kind == "inner":
                loss = siren_loss()
            elif impl == "reference":
                loss = reference.training_step(model, x, y, cfg)["loss"]
            else:
                loss = training_step(model, x, y, cfg).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return len(x)

        return step

    if kind == "fit":
        model.eval()
        x, _ = images(task["n"], size["side"], seed=1)

        def fit() -> int:
            if impl == "reference":
                reference.fit_images(model, x)
            else:
                fit_batches(model, x, task["batch"], torch.device("cpu"))
            return len(x)

        return fit

    if kind == "reader":
        model.eval()
        n, batch = task["n"], task["batch"]
        tokens = torch.randn(n, size["depth"] * size["width"], size["width"] + 1) * 1e-3

        @torch.no_grad()
        def read() -> int:
            for i in range(0, n, batch):
                model.reader(tokens[i : i + batch])
            return n

        return read
    raise ValueError(f"unknown kind {kind!r}")


def serve(task: dict) -> None:
    """Worker loop: build, warm up, then one timed unit per 'run' line on stdin."""
    import reference  # noqa: F401  (imports counted in the base RSS, not the step's)
    import torch

    from inrroute import fitting, model  # noqa: F401
    from inrroute.runtime import job_cpus

    threads = task.get("threads") or job_cpus()
    torch.set_num_threads(threads)
    base = rss_mb()
    unit = make_unit(task)
    unit()  # warm-up (allocator, lazy init)
    print(json.dumps({"ready": True, "threads": threads}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        n = unit()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"wall": wall, "cpu": cpu, "images": n}), flush=True)
    print(json.dumps({"peak_mb": peak_mb(), "base_mb": base}), flush=True)


# --------------------------------------------------------------------------- driver side


class Worker:
    def __init__(self, task: dict):
        self.task = task
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", json.dumps(task)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.results: list[dict] = []
        self.read()  # ready

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"worker {self.task} died (exit {self.proc.returncode})")
        return json.loads(line)

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        result = self.read()
        self.results.append(result)
        return result

    def stop(self) -> dict:
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        mem = self.read()
        self.proc.wait()
        walls = [r["wall"] for r in self.results]
        cpus = [r["cpu"] for r in self.results]
        ips = [r["images"] / r["wall"] for r in self.results]
        return {
            "wall": statistics.median(walls),
            "cpu": statistics.median(cpus),
            "images_per_s": statistics.median(ips),
            "rounds": len(walls),
            "peak_mb": mem["peak_mb"],
            "above_base_mb": mem["peak_mb"] - mem["base_mb"],
        }


def compare(tasks: dict[str, dict], rounds: int) -> dict[str, dict]:
    """Start one worker per task, run ``rounds`` rotating rounds, return per-task medians."""
    workers = {name: Worker(task) for name, task in tasks.items()}
    names = list(workers)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            res = workers[name].run()
            print(
                f"  round {r}: {name} {tasks[name]['kind']} {tasks[name]['size']}: "
                f"wall {res['wall']:.3f}s cpu {res['cpu']:.3f}s",
                file=sys.stderr,
                flush=True,
            )
    return {name: w.stop() for name, w in workers.items()}


def time_command(cmd: list[str]) -> float | None:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    if res.returncode:
        print(f"  {' '.join(cmd)} failed:\n{(res.stdout + res.stderr)[-2000:]}", file=sys.stderr)
        return None
    return time.perf_counter() - t0


def git(*args: str) -> str:
    res = subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True)
    return res.stdout.strip()


def machine() -> str:
    try:
        return subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()


def step_table(rows: dict[tuple[str, str], dict], sizes: list[str]) -> list[str]:
    out = [
        (
            "| size | implementation | wall (s) | speedup | CPU (s) | CPU speedup "
            "| peak RSS (MB) | peak - base (MB) | rounds |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        ref = rows[(size, "reference")]
        for impl in STEP_IMPLS:
            r = rows[(size, impl)]
            out.append(
                f"| {size} | {impl} | {r['wall']:.3f} | {ref['wall'] / r['wall']:.2f}x "
                f"| {r['cpu']:.3f} | {ref['cpu'] / r['cpu']:.2f}x | {r['peak_mb']:.0f} "
                f"| {r['above_base_mb']:.0f} | {r['rounds']} |"
            )
    return out


def run_all(args) -> str:
    import torch

    from inrroute.runtime import job_cpus

    sizes = args.sizes
    threads = args.threads or job_cpus()

    def rounds_for(size: str) -> int:
        return 2 if args.quick else SIZES[size]["rounds"]

    step_rows: dict[tuple[str, str], dict] = {}
    inner_rows: dict[tuple[str, str], dict] = {}
    for size in sizes:
        for kind, rows in (("step", step_rows), ("inner", inner_rows)):
            tasks = {
                impl: {"kind": kind, "size": size, "impl": impl, "threads": threads}
                for impl in STEP_IMPLS
            }
            for impl, res in compare(tasks, rounds_for(size)).items():
                rows[(size, impl)] = res

    fit_tasks = {
        name: {"kind": "fit", "size": "fashion", "impl": impl, "n": n, "batch": batch}
        | {"threads": threads}
        for name, (impl, n, batch) in FIT_IMPLS.items()
    }
    fit_rows = compare(fit_tasks, 2 if args.quick else 5)

    reader_tasks = {
        size: {
            "kind": "reader",
            "size": size,
            "impl": "fast",
            "n": 64 if size == "paper" else 2048,
            "batch": 16 if size == "paper" else 256,
            "threads": threads,
        }
        for size in sizes
    }
    reader_rows = compare(reader_tasks, 2 if args.quick else 5)

    dry = {}
    snakemake = Path(sys.executable).with_name("snakemake")
    # A scratch results_dir: the full study's DAG, untouched by (and not locked against)
    # a study that may be running in results/ right now.
    with tempfile.TemporaryDirectory(prefix="inrroute-dryrun-") as scratch:
        for conf in ("config/config.yaml", "config/paper.yaml"):
            if (ROOT / conf).exists():
                dry[conf] = time_command(
                    [str(snakemake), "-n", "-q", "--nolock", "--configfile", conf]
                    + ["--config", f"results_dir={scratch}/{Path(conf).stem}"]
                )

    dirty = git("status", "--porcelain", "--untracked-files=no")
    lines = [
        f"### Measured run: {threads} torch thread(s)",
        "",
        f"- commit: `{git('rev-parse', '--short', 'HEAD')}`"
        + (" (plus uncommitted changes)" if dirty else ""),
        f"- command: `python benchmarks/run.py {' '.join(sys.argv[1:])}`",
        f"- torch {torch.__version__}, {threads} torch threads, {time.strftime('%Y-%m-%d %H:%M')}",
        "- machine (`lscpu | head`):",
        "",
        "```",
        *machine().splitlines()[:10],
        "```",
        "",
        "Implementations: **fast** = the package (`inrroute.model.training_step`: batched",
        "matmuls over images, analytic inner-loop gradient `siren.mse_grads`); **autograd** =",
        "the package with `model.analytic_inner_grad = False` (batched, `torch.autograd.grad`",
        "inner gradient); **reference** = `benchmarks/reference.py` (one image at a time,",
        "per-layer Python loop, `autograd.grad(create_graph=True)`; same reader module and",
        "weights). Each implementation runs in its own process; the processes of a table take",
        "turns, one unit each per round, so background load hits them alike. Wall and CPU",
        "(process CPU time, all threads) are medians over rounds. Peak RSS is `ru_maxrss` of",
        "that process; peak - base subtracts its RSS before the model was built",
        "(interpreter, torch, imports), i.e. the memory of the model and its step.",
        "",
        "#### Meta-train step (inner loop with create_graph, reader, backward, clip, AdamW)",
        "",
        *step_table(step_rows, sizes),
        "",
        "Sizes: "
        + "; ".join(
            f"**{s}** width {c['width']}, depth {c['depth']}, K {c['K']}, reader {c['rdim']} x "
            f"{c['rdepth']} blocks ({c['heads']} heads), batch {c['batch']}, "
            f"{c['side']}x{c['side']}"
            for s, c in SIZES.items()
            if s in sizes
        )
        + ".",
        "",
        "#### SIREN part of the step alone (inner loop, reconstruction, token term; backward)",
        "",
        *step_table(inner_rows, sizes),
        "",
        "#### Fit throughput (fashion size, first-order inner loop + PSNR, as `inrroute fit`)",
        "",
        "| implementation | images/s | ratio vs reference | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    ref_ips = fit_rows["reference, one image at a time"]["images_per_s"]
    for name, r in fit_rows.items():
        lines.append(
            f"| {name} | {r['images_per_s']:.1f} | {r['images_per_s'] / ref_ips:.1f}x "
            f"| {r['peak_mb']:.0f} |"
        )
    lines += [
        "",
        "#### Reader throughput (inference, eval mode)",
        "",
        "| size | batch | images/s |",
        "|---|---:|---:|",
        *(
            f"| {s} | {reader_tasks[s]['batch']} | {r['images_per_s']:.1f} |"
            for s, r in reader_rows.items()
        ),
        "",
        "#### Workflow",
        "",
        "| command | wall (s) |",
        "|---|---:|",
        *(
            f"| `snakemake -n -q --nolock --configfile {conf} --config results_dir=SCRATCH` | "
            + (f"{t:.1f}" if t is not None else "failed")
            + " |"
            for conf, t in dry.items()
        ),
        "",
    ]
    return "\n".join(lines)


def mwt_ratio(args) -> str:
    """The package's meta-train step against the MWT reference's structure
    (benchmarks/mwt_style.py) at identical sizes, taking turns in two processes."""
    import torch

    from inrroute.runtime import job_cpus

    threads = args.threads or job_cpus()
    lines = [
        (
            f"- commit `{git('rev-parse', '--short', 'HEAD')}`, "
            f"command `python benchmarks/run.py {' '.join(sys.argv[1:])}`, torch "
            f"{torch.__version__}, {threads} torch thread(s), {time.strftime('%Y-%m-%d %H:%M')}"
        ),
        "",
        (
            "| size | MWT-structured step (s) | inrroute step (s) | ratio (MWT / inrroute) "
            "| peak - base MB, MWT / inrroute | rounds |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for size in args.sizes:
        tasks = {impl: {"kind": "step", "size": size, "impl": impl, "threads": threads}
                 for impl in ("mwt", "fast")}  # fmt: skip
        rows = compare(tasks, 2 if args.quick else SIZES[size]["rounds"])
        mwt, fast = rows["mwt"], rows["fast"]
        lines.append(
            f"| {size} | {mwt['wall']:.3f} | {fast['wall']:.3f} | "
            f"{mwt['wall'] / fast['wall']:.2f}x | {mwt['above_base_mb']:.0f} / "
            f"{fast['above_base_mb']:.0f} | {fast['rounds']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="also write the Markdown section to this file")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, help="torch threads (default: the job's CPUs)")
    parser.add_argument("--quick", action="store_true", help="2 rounds each: a smoke pass")
    parser.add_argument(
        "--mwt",
        action="store_true",
        help="only the step ratio: the package's step against benchmarks/mwt_style.py",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(json.loads(args.serve))
        return
    text = mwt_ratio(args) if args.mwt else run_all(args)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
