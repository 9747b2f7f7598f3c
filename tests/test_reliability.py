"""Faults provoked for real: signals, truncated files, NaN, missing data, concurrency (issue 5).

Training runs here are real ``inrroute meta-train`` subprocesses on a tiny digits config
(``--threads 1`` in every run, so the float reductions and hence the bits are the same).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from inrroute import cli
from inrroute.config import Combination, from_mapping, load_config
from inrroute.data import split_of, stage
from inrroute.io import (
    InputError,
    atomic_path,
    load_torch,
    read_csv,
    read_netcdf,
    remove_stale_temps,
    write_netcdf,
)
from inrroute.training import Interrupted, meta_train
from tiny import COMBO, STEPS_PER_EPOCH, TINY, write_config

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
BASELINE = "cluster0_route0_biasroute0_densefit0"
TEMP_GLOB = ".*.tmp"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A config file and the staged digits of the tiny study."""
    root = tmp_path_factory.mktemp("study")
    cfg = write_config(root / "config.yaml", root / "results")
    data = root / "results" / "data" / "digits.nc"
    write_netcdf(stage("digits", root / "raw", 200, 100, seed=0), data)
    return {"root": root, "config": cfg, "data": data}


def train_cmd(study, out_dir: Path, seed: int = 0, combo: str = COMBO, config=None) -> list[str]:
    return [
        str(BIN / "inrroute"), "meta-train", "--config", str(config or study["config"]),
        "--data", str(study["data"]), "--seed", str(seed), "--combination", combo,
        "--out-dir", str(out_dir), "--threads", "1", "--no-progress",
    ]  # fmt: skip


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def loop_state(ckpt: Path) -> dict | None:
    """The loop position stored in a checkpoint, or None before the first one."""
    if not ckpt.exists():
        return None
    return torch.load(ckpt, map_location="cpu", weights_only=False)["loop"]


def wait_for(proc: subprocess.Popen, ckpt: Path, ready, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"finished before the fault: {proc.communicate()}"
        loop = loop_state(ckpt)
        if loop is not None and ready(loop):
            return loop
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no checkpoint matching the condition within {timeout} s")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_torch(path)["state_dict"]


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical model weights and train log (all but the wall-clock seconds)."""
    wa, wb = weights(a / "model.pt"), weights(b / "model.pt")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    la = pd.read_csv(a / "train_log.csv").drop(columns="seconds")
    lb = pd.read_csv(b / "train_log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(la, lb, check_exact=True)
    assert list(la["epoch"]) == [0, 1, 2, 3]


def assert_no_temporaries(folder: Path) -> None:
    assert not list(folder.rglob(TEMP_GLOB)), list(folder.rglob(TEMP_GLOB))


# The same command line, in this process (no second interpreter start): main() returns
# the exit code, the log holds the one message.


def main_here(caplog, *argv: str) -> tuple[int, list[str]]:
    caplog.clear()
    code = cli.main(list(argv))
    return code, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def assert_message(errors: list[str], needles: list[str]) -> None:
    (message,) = errors
    for needle in needles:
        assert needle in message, f"{needle!r} missing from:\n{message}"


def train_here(study, out: Path, config: Path | None = None, combo: str = COMBO, **kw) -> Path:
    """meta_train in this process, one torch thread like the subprocesses' ``--threads 1``."""
    torch.set_num_threads(1)
    cfg = load_config(config or study["config"])
    train = split_of(read_netcdf(study["data"]), "train")
    return meta_train(
        cfg, Combination.parse(combo), 0, train, out, torch.device("cpu"), False, **kw
    )


@pytest.fixture(scope="module")
def reference(study):
    """An uninterrupted run of (seed 0, COMBO): what every resumed run must equal.

    Trained in this process (same code, same single thread): bit-identity then also shows
    that nothing depends on the process a run happens to live in.
    """
    out = study["root"] / "reference"
    train_here(study, out)
    return out


# 1. Killed meta-training ---------------------------------------------------------------


def mid_epoch(loop: dict) -> bool:
    """Past the first epoch, inside an epoch, not in the last one."""
    last = TINY["training"]["epochs"] - 1
    return (
        loop["global_step"] > STEPS_PER_EPOCH and loop["step_in_epoch"] > 0 and loop["epoch"] < last
    )


def test_sigkill_mid_epoch_then_rerun_is_bit_identical(study, reference, tmp_path, caplog):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    proc = start(train_cmd(study, out))
    # Freeze the process once its last checkpoint lies mid-epoch (past the first epoch),
    # confirm while frozen, then SIGKILL: no handler runs, nothing is flushed.
    while True:
        wait_for(proc, ckpt, mid_epoch)
        proc.send_signal(signal.SIGSTOP)
        frozen = loop_state(ckpt)
        if mid_epoch(frozen):
            proc.send_signal(signal.SIGKILL)
            break
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.communicate()
    assert not (out / "model.pt").exists()
    assert loop_state(ckpt) == frozen  # the final path holds a whole, loadable checkpoint
    # (one more row if it was frozen between an epoch's log and that epoch's checkpoint)
    assert len(pd.read_csv(out / "train_log.csv")) - frozen["epoch"] in (0, 1)

    # Re-run the same command (in this process: one interpreter start less).
    assert main_here(caplog, *train_cmd(study, out)[1:]) == (0, [])
    assert_same_run(reference, out)
    assert_no_temporaries(out)


def test_sigterm_writes_checkpoint_exits_143_then_rerun_is_bit_identical(
    study, reference, tmp_path, caplog
):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    proc = start(train_cmd(study, out))
    seen = wait_for(proc, ckpt, lambda s: s["global_step"] >= STEPS_PER_EPOCH + 4)
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)  # what Slurm sends at the time limit / scancel
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "stopped at epoch" in stderr and f"checkpoint written to {ckpt}" in stderr
    # A new checkpoint at the step the signal arrived in, written after the signal.
    after = loop_state(ckpt)
    assert after["global_step"] > seen["global_step"]
    assert ckpt.stat().st_mtime >= signalled - 1
    assert not (out / "model.pt").exists()
    assert_no_temporaries(out)

    # Re-run the same command (in this process: one interpreter start less).
    assert main_here(caplog, *train_cmd(study, out)[1:]) == (0, [])
    assert_same_run(reference, out)


def test_resume_survives_changes_that_do_not_affect_training(study, tmp_path, caplog):
    """A checkpoint stays valid when results move or probe/stats/thread settings change;
    a change to what training computes is refused with a clear message."""
    out = tmp_path / "run"
    cut = write_config(tmp_path / "a.yaml", tmp_path / "r1", training={"epochs": 1})
    with pytest.raises(Interrupted):
        train_here(study, out, cut, max_steps=10)
    moved = write_config(
        tmp_path / "b.yaml", tmp_path / "r2", training={"epochs": 1, "threads": 2,
        "checkpoint_every": 7}, probes={"knn_k": 3}, stats={"bootstrap": 20}, device="cpu",
    )  # fmt: skip
    with pytest.raises(Interrupted):  # resumed: 10 + 5 steps
        train_here(study, out, moved, max_steps=5)
    assert loop_state(out / "checkpoint.pt")["global_step"] == 15
    other = write_config(tmp_path / "c.yaml", tmp_path / "r3", training={"epochs": 1, "lr": 0.01})
    code, errors = main_here(caplog, *train_cmd(study, out, config=other)[1:])
    assert code == 2
    assert_message(errors, [f"{out / 'checkpoint.pt'} belongs to a different configuration"])
    assert loop_state(out / "checkpoint.pt")["global_step"] == 15  # left as it was


# 2. Partial outputs and damaged inputs -------------------------------------------------


def test_atomic_path_leaves_nothing_when_the_writer_raises(tmp_path):
    final = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(final) as tmp:
        tmp.write_text("a,b\n1,")  # half a table, then the writer fails
        raise RuntimeError("disk full")
    assert not final.exists()
    assert not list(final.parent.iterdir())
    # An older complete version survives a failed rewrite untouched.
    final.write_text("a,b\n1,2\n")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("a,b\n9,")
        raise RuntimeError("killed")
    assert final.read_text() == "a,b\n1,2\n"
    assert [p.name for p in final.parent.iterdir()] == ["table.csv"]


SLOW_WRITER = """
import sys, time
from inrroute.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as fh:
        for i in range(2000):
            fh.write("x" * 1000 + "\\n"); fh.flush(); time.sleep(0.005)
"""


def test_sigkill_during_a_write_never_leaves_a_partial_final_file(tmp_path):
    final = tmp_path / "fitted.nc"
    final.write_text("old complete version\n")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(final)], env=ENV)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 50_000 for p in tmp_path.glob(TEMP_GLOB)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert final.read_text() == "old complete version\n"
    (leftover,) = tmp_path.glob(TEMP_GLOB)  # the killed writer's temporary, never trusted
    assert leftover.name.startswith(".fitted.nc.") and str(proc.pid) in leftover.name
    assert remove_stale_temps(tmp_path, ("fitted.nc",)) == [leftover]
    assert [p.name for p in tmp_path.iterdir()] == ["fitted.nc"]


@pytest.fixture(scope="module")
def trained(study):
    """model.pt of a 1-epoch baseline run and its fitted.nc."""
    out = study["root"] / "trained"
    cfg = write_config(study["root"] / "one_epoch.yaml", study["root"] / "results",
                       training={"epochs": 1, "batch_size": 32})  # fmt: skip
    train_here(study, out, cfg, combo=BASELINE)
    from inrroute.config import load_config
    from inrroute.fitting import write_fitted
    from inrroute.model import load_model

    model = load_model(out / "model.pt")
    staged = read_netcdf(study["data"])
    write_fitted(model, staged, load_config(cfg), torch.device("cpu"), out / "fitted.nc", dict)
    return {"config": cfg, "model": out / "model.pt", "fitted": out / "fitted.nc"}


def truncated(src: Path, dst: Path) -> Path:
    blob = src.read_bytes()
    dst.write_bytes(blob[: len(blob) // 2])
    return dst


def assert_one_clear_error(proc, code: int, needles: list[str]) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count(" ERROR ") == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} missing from:\n{proc.stderr}"


def test_truncated_fitted_nc_given_to_read(study, trained, tmp_path):
    bad = truncated(trained["fitted"], tmp_path / "fitted.nc")
    out = tmp_path / "reader.nc"
    proc = run([str(BIN / "inrroute"), "read", "--config", str(trained["config"]), "--model",
                str(trained["model"]), "--fitted", str(bad), "--out", str(out)])  # fmt: skip
    assert_one_clear_error(proc, 2, [str(bad), "truncated", "Re-run the fit rule"])
    assert not out.exists() and not list(tmp_path.glob(TEMP_GLOB))


def test_truncated_model_pt_given_to_fit(study, trained, tmp_path, caplog):
    bad = truncated(trained["model"], tmp_path / "model.pt")
    out = tmp_path / "fitted.nc"
    code, errors = main_here(caplog, "fit", "--config", str(trained["config"]), "--model",
                             str(bad), "--data", str(study["data"]), "--out", str(out),
                             "--threads", "1", "--no-progress")  # fmt: skip
    assert code == 2
    assert_message(errors, [str(bad), "truncated", "Re-run the meta_train rule"])
    assert not out.exists()


def test_truncated_staged_nc_given_to_fit(study, trained, tmp_path, caplog):
    bad = truncated(study["data"], tmp_path / "digits.nc")
    out = tmp_path / "fitted.nc"
    code, errors = main_here(caplog, "fit", "--config", str(trained["config"]), "--model",
                             str(trained["model"]), "--data", str(bad), "--out", str(out),
                             "--threads", "1", "--no-progress")  # fmt: skip
    assert code == 2
    assert_message(errors, [str(bad), "truncated", "Re-run the stage rule"])
    assert not out.exists()


def test_corrupt_checkpoint_in_a_run_folder(study, tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    code, errors = main_here(caplog, *train_cmd(study, out)[1:])
    assert code == 2
    assert_message(errors, [str(out / "checkpoint.pt"), "Delete it to restart"])
    assert not (out / "model.pt").exists()


def test_missing_and_empty_csv_tables(tmp_path):
    with pytest.raises(InputError, match="does not exist. Re-run the stats rule"):
        read_csv(tmp_path / "anova.csv", remedy="Re-run the stats rule.")
    (tmp_path / "anova.csv").write_text("")
    with pytest.raises(InputError, match=r"anova.csv is truncated .*Re-run the stats rule"):
        read_csv(tmp_path / "anova.csv", remedy="Re-run the stats rule.")


# 4. Numerical faults --------------------------------------------------------------------


def test_exploding_learning_rate_stops_with_message_and_keeps_checkpoint(study, tmp_path):
    """A real config that blows training up: lr 1e10 turns the loss NaN at the 2nd step."""
    cfg = write_config(tmp_path / "hot.yaml", tmp_path / "r",
                       training={"lr": 1e10, "alpha_lr": 1e10, "checkpoint_every": 1})  # fmt: skip
    out = tmp_path / "run"
    proc = run(train_cmd(study, out, combo=BASELINE, config=cfg))
    assert_one_clear_error(
        proc, 3, ["loss is not finite", "epoch 0, step 1", f"kept at {out / 'checkpoint.pt'}"]
    )
    blob = load_torch(out / "checkpoint.pt")
    assert blob["loop"]["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in blob["state_dict"].values())
    assert not (out / "model.pt").exists()


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss with a broken backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


@pytest.mark.parametrize("fault", ["nan_loss", "inf_gradient"])
def test_nonfinite_mid_run_names_quantity_epoch_step_and_keeps_checkpoint(
    study, tmp_path, monkeypatch, fault
):
    from inrroute import training

    torch.set_num_threads(1)
    cfg = from_mapping({**TINY, "training": {**TINY["training"], "checkpoint_every": 3}})
    real_step, calls = training.training_step, []
    bad_at = STEPS_PER_EPOCH + 5  # epoch 1, step 5 of the epoch (0-based: the 31st call)

    def flaky_step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == bad_at + 1:
            if fault == "nan_loss":
                out.loss = out.loss * float("nan")
            else:
                out.objective = _InfGrad.apply(out.objective)  # what backward() differentiates
        return out

    monkeypatch.setattr(training, "training_step", flaky_step)
    train = split_of(read_netcdf(study["data"]), "train")
    out = tmp_path / "run"
    with pytest.raises(training.NumericalError) as info:
        training.meta_train(
            cfg, Combination.parse(COMBO), 0, train, out, torch.device("cpu"), False
        )
    quantity = "loss" if fault == "nan_loss" else "gradient norm"
    assert str(info.value).startswith(f"{quantity} is not finite (NaN/Inf) at epoch 1, step 5 ")
    assert f"kept at {out / 'checkpoint.pt'}" in str(info.value)
    blob = load_torch(out / "checkpoint.pt")
    assert blob["loop"]["global_step"] == 30  # the last multiple of 3 before the fault
    assert all(torch.isfinite(v).all() for v in blob["state_dict"].values())
    assert not (out / "model.pt").exists()
    assert_no_temporaries(out)


def test_nan_in_phi_during_fit_exits_3(study, trained, tmp_path, caplog):
    blob = load_torch(trained["model"])
    key = next(k for k in blob["state_dict"] if k.startswith("alphas"))
    blob["state_dict"][key] = torch.full_like(blob["state_dict"][key], float("nan"))
    bad = tmp_path / "model.pt"
    torch.save(blob, bad)
    out = tmp_path / "fitted.nc"
    code, errors = main_here(caplog, "fit", "--config", str(trained["config"]), "--model",
                             str(bad), "--data", str(study["data"]), "--out", str(out),
                             "--threads", "1", "--no-progress")  # fmt: skip
    assert code == 3
    assert_message(errors, ["phi is not finite (NaN/Inf)", "images 0..", str(bad)])
    assert not out.exists() and not list(tmp_path.glob(TEMP_GLOB))


# 5. Missing data ---------------------------------------------------------------------


def test_unstageable_dataset_says_how_to_stage_on_a_login_node(tmp_path, monkeypatch, caplog):
    """mnist into an empty data_root on a node without network: a real failed download."""
    empty = tmp_path / "raw"
    empty.mkdir()
    cfg = write_config(tmp_path / "mnist.yaml", tmp_path / "results", datasets=["mnist"],
                       data_root=str(empty), caps={"mnist": {"train": 200, "test": 100}})  # fmt: skip
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3)  # a mirror that hangs instead of refusing fails fast too
    try:
        out = tmp_path / "results" / "data" / "mnist.nc"
        code = cli.main(["stage", "--config", str(cfg), "--dataset", "mnist", "--out", str(out)])
    finally:
        socket.setdefaulttimeout(previous)
    assert code == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    for needle in ("dataset 'mnist' is not staged", str(empty), "on a login node",
                   "snakemake stage_all", "inrroute stage", "data_root"):  # fmt: skip
        assert needle in message, message
    assert not out.exists()


# 6./7. Concurrency -----------------------------------------------------------------------


def test_two_seeds_meta_train_at_once_into_their_own_folders(study, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results",
                       training={"epochs": 1, "batch_size": 16, "checkpoint_every": 2})  # fmt: skip
    runs = {s: tmp_path / "results" / "digits" / f"seed{s}" / COMBO for s in (0, 1)}
    procs = {s: start(train_cmd(study, out, seed=s, config=cfg)) for s, out in runs.items()}
    for s, proc in procs.items():
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
    models = {}
    for s, out in runs.items():
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "model.pt",
                                                          "train_log.csv"]  # fmt: skip
        blob = load_torch(out / "model.pt")
        assert blob["spec"]["seed"] == s
        models[s] = blob["state_dict"]
        assert list(read_csv(out / "train_log.csv")["epoch"]) == [0]
    assert not torch.equal(models[0]["siren.theta.0"], models[1]["siren.theta.0"])


ONE_WRITE = """
import sys
from inrroute.io import atomic_path
with atomic_path(sys.argv[1]) as t:
    print(t.name)
    t.write_text("x")
"""


def test_atomic_temp_names_are_unique_per_call_thread_and_process(tmp_path):
    final = tmp_path / "resolved.yaml"
    names, barrier, lock = [], threading.Barrier(8), threading.Lock()

    def writer(i: int) -> None:
        with atomic_path(final) as tmp:
            with lock:
                names.append(tmp.name)
            barrier.wait()  # all eight temporaries exist at the same time
            tmp.write_text(f"writer {i}\n" * 1000)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8
    assert all(n.startswith(f".resolved.yaml.{os.getpid()}.") for n in names)
    lines = set(final.read_text().splitlines())
    assert len(lines) == 1  # one writer's complete file, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["resolved.yaml"]
    # Another process gets its pid in the name as well.
    other = subprocess.run(
        [sys.executable, "-c", ONE_WRITE, str(final)],
        env=ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip
    name = other.stdout.strip()
    assert name.startswith(".resolved.yaml.") and name not in names
    assert np.unique([n.split(".")[3] for n in [*names, name]]).size == 2  # two pids
