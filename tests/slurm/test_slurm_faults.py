"""Slurm faults on the live single-node Slurm of tests/slurm/up.sh (issue 5, item 6).

Both provoke the fault through Slurm itself, on one meta-training run of the real
workflow (profiles/slurm-ci + the workflow profile profiles/default; only `stage`, a local rule, and `meta_train` run):

- time limit: attempt 1 gets a 1-minute limit and stalls (``scancel --signal=STOP``,
  standing in for a job slower than its limit); Slurm's time limit ends it (SIGCONT +
  SIGTERM, state TIMEOUT); the retry gets a larger ``-t`` and ``--mem`` (``attempt``)
  and succeeds;
- ``scancel --signal=TERM`` of the running meta_train job: the signal reaches the
  ``inrroute`` process (it runs in the job's srun step, which scancel signals by
  default), a checkpoint is written, the job fails and Snakemake resubmits it.

In both, the retry resumes from checkpoint.pt (the checkpoint's step counter never goes
back) and the final weights and train log equal those of an undisturbed run of the same
run on this machine (CPU, one torch thread as the rule passes --threads 1).
"""

from __future__ import annotations

import pickle
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from slurm_helpers import (
    ROOT,
    cancel_jobs_under,
    copy_repo,
    env,
    job_state,
    job_table,
    report_time,
    run_snakemake,
    sbatch_calls,
    sbatch_options,
    slurm_up,
    snakemake_cmd,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

LIMIT = 1200  # s, per Snakemake run
COMBO = "cluster1_route1_biasroute1_densefit1"
RUN = f"results/fault/digits/seed0/{COMBO}"
TARGET = f"{RUN}/model.pt"
# One run, long enough (~40 epochs x 7 steps) that a signal lands mid-training.
FAULT_CONFIG = f"""\
results_dir: results/fault
datasets: [digits]
seeds: [0]
combinations: [{COMBO}]
caps:
  digits: {{train: 200, test: 100}}
model: {{width: 8, depth: 1, inner_steps: 2}}
reader: {{dim: 16, depth: 1, heads: 2}}
training: {{epochs: 40, batch_size: 32, lr: 0.003, checkpoint_every: 5}}
factors: {{bias_route_hidden: 8}}
probes: {{knn_k: 5, intervention_draws: 2, fresh_reader_epochs: 1}}
stats: {{bootstrap: 50}}
"""


@pytest.fixture(scope="module")
def fault_config(tmp_path_factory):
    if not slurm_up():
        pytest.skip("no idle Slurm node (run tests/slurm/up.sh)")
    path = tmp_path_factory.mktemp("fault-config") / "fault.yaml"
    path.write_text(FAULT_CONFIG)
    return path


# Bit-identity holds for one thread count: the workflow profile gives meta_train 8
# threads, capped by each run's cores (1 locally, the site profile's 4 on Slurm), so
# both runs pin it to the one thread the comparison assumes.
ONE_THREAD = ["--set-threads", "meta_train=1"]


@pytest.fixture(scope="module")
def reference(fault_config, tmp_path_factory):
    """The same run, undisturbed, through the local profile: made on first call.

    Called after the disturbed run, so that both see the same package code (the venv's
    editable install points at the working tree, not at the test's copy).
    """
    made: list[Path] = []

    def make() -> Path:
        if not made:
            wd = copy_repo(tmp_path_factory.mktemp("fault-reference") / "repo")
            args = ["--profile", "profiles/local", "--configfile", str(fault_config)]
            rc, log, seconds = run_snakemake(
                [*args, "--cores", "1", TARGET, *ONE_THREAD], wd, LIMIT, "snakemake-local.log"
            )
            assert rc == 0, log[-5000:]
            report_time("fault reference run (local)", seconds)
            made.append(wd / RUN)
        return made[0]

    return make


def meta_train_profile_resources(**override: str) -> list[str]:
    """The workflow profile's set-resources of meta_train as --set-resources arguments.

    A --set-resources on the command line replaces the profile's whole top-level key,
    so the profile's values are restated and only ``override`` changes.
    """
    import yte

    with open(ROOT / "profiles" / "default" / "config.yaml") as f:
        profile = yte.process_yaml(f, require_use_yte=True)
    res = {**profile["set-resources"]["meta_train"], **override}
    return [f"meta_train:{k}={v}" for k, v in res.items()]


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["loop"]["global_step"])
    except (OSError, EOFError, RuntimeError, KeyError, pickle.UnpicklingError):
        return None  # absent, or replaced while reading


def epochs_logged(run: Path) -> int:
    try:
        return len(pd.read_csv(run / "train_log.csv"))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return 0  # not written yet, or replaced while reading


class Disturbed:
    """Runs the workflow on Slurm in the background and watches one meta_train run."""

    def __init__(self, wd: Path, config: Path, extra: list[str]):
        self.wd = wd
        self.run = wd / RUN
        self.train_log = wd / "logs" / "meta_train" / "digits" / "seed0" / f"{COMBO}.log"
        self.log_path = wd / "snakemake-slurm.log"
        self.steps_seen: list[int] = []
        self.t0 = time.monotonic()
        args = ["--profile", "profiles/slurm-ci", "--configfile", str(config), "--verbose"]
        # The target before `extra`: an option like --set-resources takes every word after it.
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                snakemake_cmd([*args, TARGET, *ONE_THREAD, *extra], LIMIT),
                cwd=wd,
                env=env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def poll(self, until, timeout: float, what: str):
        """Poll until(self) is truthy, recording the checkpoint's step counter meanwhile."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.record_step()
            value = until(self)
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"snakemake ended ({self.proc.returncode}) before {what}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def record_step(self) -> None:
        step = checkpoint_step(self.run / "checkpoint.pt")
        if step is not None and (not self.steps_seen or self.steps_seen[-1] != step):
            self.steps_seen.append(step)

    def mark_interrupted(self) -> int:
        """The step of the checkpoint written on SIGTERM; later ones must not go below it."""
        step = checkpoint_step(self.run / "checkpoint.pt")
        assert step is not None
        self.step_at_stop, self.mark = step, len(self.steps_seen)
        return step

    def running_meta_train(self) -> str | None:
        for row in job_table():
            if (
                row["comment"].startswith("rule_meta_train")
                and row["state"] == "RUNNING"
                and Path(row["workdir"]).resolve() == self.wd.resolve()
            ):
                return row["id"]
        return None

    def interrupted_log(self) -> str | None:
        try:
            text = self.train_log.read_text()
        except FileNotFoundError:
            return None
        return text if "checkpoint written to" in text else None

    def finish(self) -> tuple[int, str, float]:
        """Wait for Snakemake, still recording the checkpoint; (exit code, log, seconds)."""
        end = time.monotonic() + LIMIT + 120
        while self.proc.poll() is None and time.monotonic() < end:
            self.record_step()
            time.sleep(0.2)
        self.record_step()
        if self.proc.poll() is None:
            self.proc.kill()
        cancel_jobs_under(self.wd)
        return self.proc.wait(), self.log(), time.monotonic() - self.t0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        cancel_jobs_under(self.wd)


def assert_same_as_reference(run: Path, reference: Path) -> None:
    from inrroute.model import load_model

    got = load_model(run / "model.pt")
    want = load_model(reference / "model.pt")
    got_sd, want_sd = got.state_dict(), want.state_dict()
    assert got_sd.keys() == want_sd.keys()
    for key in want_sd:
        assert torch.equal(got_sd[key], want_sd[key]), f"weights differ: {key}"
    # The train log too, but for its wall-clock column.
    a = pd.read_csv(run / "train_log.csv").drop(columns="seconds")
    b = pd.read_csv(reference / "train_log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def assert_resumed(d: Disturbed) -> None:
    """After the interruption the checkpoint's step counter never went back to 0."""
    after = d.steps_seen[d.mark :]
    print(f"checkpoint steps seen: {d.steps_seen}; interrupted at step {d.step_at_stop}")
    assert after and min(after) >= d.step_at_stop, f"restarted from scratch: {d.steps_seen}"
    assert after[-1] > d.step_at_stop, d.steps_seen
    text = d.train_log.read_text()
    assert "model written to" in text and "Traceback" not in text, text


def meta_train_calls(log: str) -> list[str]:
    calls = [sbatch_options(c) for c in sbatch_calls(log, "meta_train")]
    return calls


def opt(call: str, flag: str) -> int:
    return int(re.search(rf"(?:^| ){flag} (\d+)", call).group(1))


def test_time_limit_then_retry_with_more_time(fault_config, reference, tmp_path):
    wd = copy_repo(tmp_path / "repo")
    # Attempt 1: 1 minute; attempt 2: 10 minutes (memory doubles through the profile).
    extra = ["--set-resources", *meta_train_profile_resources(runtime="max(1, 10 * (attempt - 1))")]
    d = Disturbed(wd, fault_config, extra)
    try:
        # A few epochs first, so that a restart from scratch would be visible.
        job = d.poll(
            lambda s: epochs_logged(s.run) >= 2 and s.running_meta_train(),
            600,
            "two epochs of a running meta_train job",
        )
        # The job stalls; nothing but Slurm's time limit ends it.
        subprocess.run(["scancel", "--signal=STOP", job], check=True)
        stalled_at = time.monotonic()
        d.poll(lambda s: job_state(job) == "TIMEOUT", 240, f"job {job} to hit its time limit")
        killed_after = time.monotonic() - stalled_at
        # At the limit Slurm sends SIGCONT then SIGTERM: the CLI writes a checkpoint.
        stopped_log = d.poll(Disturbed.interrupted_log, 60, "the checkpoint-on-SIGTERM message")
        d.mark_interrupted()
        rc, log, seconds = d.finish()
    finally:
        d.cleanup()
    assert rc == 0, log[-6000:]
    report_time("time limit + retry", seconds, f"(TIMEOUT {killed_after:.0f} s after the stall)")
    assert "stopped at epoch" in stopped_log, stopped_log
    calls = meta_train_calls(log)
    assert len(calls) == 2, calls
    first, second = calls
    assert (opt(first, "-t"), opt(second, "-t")) == (1, 10), calls
    assert opt(second, "--mem") == 2 * opt(first, "--mem"), calls
    assert "--gpus=1" in first and "--gpus=1" in second
    assert_resumed(d)
    assert_same_as_reference(d.run, reference())


def test_scancel_term_resumes_from_checkpoint(fault_config, reference, tmp_path):
    wd = copy_repo(tmp_path / "repo")
    d = Disturbed(wd, fault_config, [])
    try:
        # A few epochs first, so that a restart from scratch would be visible.
        job = d.poll(
            lambda s: epochs_logged(s.run) >= 2 and s.running_meta_train(),
            600,
            "two epochs of a running meta_train job",
        )
        subprocess.run(["scancel", "--signal=TERM", job], check=True)
        stopped_log = d.poll(Disturbed.interrupted_log, 120, "the checkpoint-on-SIGTERM message")
        d.mark_interrupted()
        state = d.poll(
            lambda s: (st := job_state(job)) not in (None, "RUNNING", "COMPLETING") and st,
            120,
            f"job {job} to end",
        )
        rc, log, seconds = d.finish()
    finally:
        d.cleanup()
    assert rc == 0, log[-6000:]
    report_time("scancel --signal=TERM + retry", seconds, f"(attempt 1 ended {state})")
    assert state == "FAILED", state  # exit code 143 from the CLI -> the job failed
    assert "stopped at epoch" in stopped_log, stopped_log
    calls = meta_train_calls(log)
    assert len(calls) == 2, calls  # resubmitted once
    assert opt(calls[1], "-t") == 2 * opt(calls[0], "-t")
    assert_resumed(d)
    assert_same_as_reference(d.run, reference())
