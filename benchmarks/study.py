"""Wall time of a whole study through the local profile, and where it went.

    python benchmarks/study.py                      # the default study (config/config.yaml)
    python benchmarks/study.py --configfile config/smoke.yaml
    python benchmarks/study.py --summarize results  # only summarise a finished results dir

Runs what `bash scripts/study.sh` runs (``snakemake --profile profiles/local`` then the
report) in a scratch results directory, so a study in results/ is not touched, and
prints a Markdown section for BENCHMARKS.md: total wall and CPU time (this process's
children: Snakemake and every job) and, per rule, the number of jobs and the sum of
their wall times from the rules' ``benchmark:`` files. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rule_times(results: Path) -> dict[str, tuple[int, float]]:
    """rule -> (jobs, summed wall seconds) from results/benchmarks/<rule>/..."""
    out: dict[str, list[float]] = defaultdict(list)
    bench = results / "benchmarks"
    for tsv in bench.rglob("*.tsv"):
        rule = tsv.relative_to(bench).parts[0].removesuffix(".tsv")
        with open(tsv) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            out[rule].append(float(rows[-1]["s"]))
    return {rule: (len(v), sum(v)) for rule, v in sorted(out.items())}


def table(results: Path) -> list[str]:
    times = rule_times(results)
    total = sum(t for _, t in times.values())
    lines = ["| rule | jobs | summed job wall (s) | share |", "|---|---:|---:|---:|"]
    for rule, (n, t) in sorted(times.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {rule} | {n} | {t:.0f} | {t / total:.0%} |")
    lines.append(f"| all jobs | {sum(n for n, _ in times.values())} | {total:.0f} | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--summarize", help="only print the per-rule table of this results dir")
    args = parser.parse_args()
    if args.summarize:
        print("\n".join(table(Path(args.summarize))))
        return
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    with tempfile.TemporaryDirectory(prefix="inrroute-study-") as scratch:
        results = Path(scratch) / "results"
        common = ["--profile", "profiles/local", "--configfile", args.configfile]
        common += ["--config", f"results_dir={results}"]
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        start = time.perf_counter()
        for extra in ([], ["--report", str(results / "report.html")]):
            subprocess.run(
                [snakemake, *common, *extra], cwd=ROOT, env=env, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=False,
        ).stdout.strip()  # fmt: skip
        machine = platform.processor() or platform.machine()
        lines = [
            f"### Study: `{args.configfile}` through `profiles/local`",
            "",
            f"- command: `python benchmarks/study.py --configfile {args.configfile}`",
            f"- commit `{commit}`, {time.strftime('%Y-%m-%d %H:%M')}, {machine}, {os.cpu_count()} CPUs",
            (
                f"- wall {wall / 60:.1f} min; CPU {usage.ru_utime / 60:.1f} min user + "
                f"{usage.ru_stime / 60:.1f} min system (Snakemake and all jobs)"
            ),
            "",
            *table(results),
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
