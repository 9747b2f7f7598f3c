"""Cost model of a study before anything runs: jobs, GPU/CPU-hours, peak memory, disk.

``inrroute plan --config FILE`` prints it per rule; the Slurm rules take their ``mem_mb``
and ``runtime`` from :func:`request` (workflow/rules/common.smk), so what a job asks for and
what the plan says are one model. Torch-free: Snakemake imports it at parse time.

The model is per image: a stage's seconds and peak memory are a fixed part plus per-image
terms in the images it handles (train/test images as capped, the stored train sample
``fit.train_images``, the geometry sample ``probes.sample``). The per-image constants are
measurements at the paper's model size (width 128, depth 4, K 6, reader 128 x 10), in
``costs.yaml`` beside this module with the machine they were measured on (BENCHMARKS.md
says how to remeasure). Other model sizes scale them by the size of phi (memory) and by
the SIREN's and the reader's multiply-adds (time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import StudyConfig
from .study import (
    DATASETS,
    GPU_RULES,
    INTERVENTIONS_BIAS,
    INTERVENTIONS_CONTROL,
    RUN_STAGES,
    parse_combination,
)

COSTS_PATH = Path(__file__).with_name("costs.yaml")
MB = 1e6
PREDICT_BATCH = 1024  # images per reader forward pass in the read stages (reading.predict)
# Rules of one job for the whole study (after every run), and one per dataset.
STUDY_RULES = ("aggregate", "stats", "figures", "findings")
DATASET_RULES = ("stage", "reconstructions")


def load_costs(path: str | Path | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or COSTS_PATH).read_text())


@dataclass(frozen=True)
class Sizes:
    """What one run of a dataset handles, from the config."""

    train: int  # train images (capped)
    test: int  # test images (capped)
    fitted_train: int  # train images fitted and stored (fit.train_images)
    probe_train: int  # geometry probes' train sample
    probe_test: int  # geometry probes' test sample
    pixels: int
    phi: int  # numbers of phi per image (layer x neuron x feature)

    @classmethod
    def of(cls, cfg: StudyConfig, dataset: str) -> Sizes:
        info = DATASETS[dataset]
        train = cfg.cap(dataset, "train") or info.train
        test = cfg.cap(dataset, "test") or info.test
        fitted = min(train, cfg.fit.train_images or train)
        sample = cfg.probes.sample
        m = cfg.model
        return cls(
            train=train,
            test=test,
            fitted_train=fitted,
            probe_train=min(fitted, sample.get("train") or fitted),
            probe_test=min(test, sample.get("test") or test),
            pixels=info.pixels,
            phi=m.depth * m.width * (m.width + 1),
        )


def _scales(cfg: StudyConfig, ref: dict[str, Any]) -> tuple[float, float, float]:
    """(SIREN, reader, phi) size of this config relative to the measured reference."""
    m, r = cfg.model, cfg.reader

    def siren(width, depth, steps):
        return width * width * (depth + 1) * steps

    def reader(tokens, dim, depth, mlp):
        # linear maps (qkv, out, MLP) plus attention's scores and mixing, per block
        return depth * (tokens * dim * dim * (4 + 2 * mlp) + 2 * tokens * tokens * dim)

    s = siren(m.width, m.depth, m.inner_steps) / siren(ref["width"], ref["depth"], ref["inner_steps"])  # fmt: skip
    rd = reader(m.depth * m.width, r.dim, r.depth, r.mlp_ratio) / reader(
        ref["depth"] * ref["width"], ref["reader_dim"], ref["reader_depth"], ref["reader_mlp_ratio"]
    )
    phi = (m.depth * m.width * (m.width + 1)) / (ref["depth"] * ref["width"] * (ref["width"] + 1))
    return s, rd, phi


def _fresh_epochs(cfg: StudyConfig) -> int:
    epochs = getattr(cfg, "fresh_reader_epochs", None)  # a method on newer configs
    return epochs() if callable(epochs) else (cfg.probes.fresh_reader_epochs or cfg.training.epochs)


TOKENFLOW_PASSES = 1.2  # one forward pass of the test set, keeping every depth


def _intervention_passes(cfg: StudyConfig) -> int:
    """Forward passes of the test set: none, each bias intervention, and each control
    kind once per drawn column (inrroute.interventions)."""
    return 1 + len(INTERVENTIONS_BIAS) + len(INTERVENTIONS_CONTROL) * cfg.probes.intervention_draws


def _dense(cfg: StudyConfig, combo: str | None) -> bool:
    """Whether the run (or, without one, any run of the config) fits with dense_fit."""
    names = [combo] if combo else cfg.combination_names()
    return any(parse_combination(n)["dense_fit"] for n in names)


def run_cost(
    cfg: StudyConfig, rule: str, dataset: str, costs: dict | None = None, combo: str | None = None
) -> dict:
    """CPU seconds, peak MB and disk bytes of one run of ``rule`` on ``dataset`` (the worst
    combination of the config unless ``combo``); peak MB also for a GPU device (where
    batch activations live on the GPU, not in RSS)."""
    c = costs or load_costs()
    dense = _dense(cfg, combo)
    k = c["constants"]
    z = Sizes.of(cfg, dataset)
    siren, reader, phi_scale = _scales(cfg, c["reference"])
    tok16 = z.phi * 2 / MB  # MB of one image's tokens held as float16
    px = z.pixels / 1000
    read_s = k["read_s_per_image"] * reader
    act = k["reader_activation_mb_per_image"] * reader  # CPU only: on a GPU it is GPU memory
    fixed = k["fixed_mb"].get(rule, k["fixed_mb"]["default"])
    cpu_extra, disk, seconds = 0.0, 0.0, 0.0
    n_fit = z.fitted_train + z.test
    if rule == "meta_train":
        seconds = cfg.training.epochs * z.train * (k["siren_train_s_per_kpixel"] * px * siren + k["reader_train_s_per_image"] * reader)  # fmt: skip
        mem = fixed + z.train * z.pixels * 4 / MB
        # dense_fit doubles the inner steps under create_graph: measured separately
        per_kpx = k["dense_train_mb_per_kpixel" if dense else "siren_train_mb_per_kpixel"]
        cpu_extra = cfg.training.batch_size * px * per_kpx * siren
        if dense:
            seconds *= cfg.factors.dense_multiplier
        disk = k["model_mb"] * max(reader, phi_scale) * 2 * MB  # model.pt + checkpoint.pt
    elif rule == "fit":
        seconds = n_fit * k["siren_fit_s_per_kpixel"] * px * siren
        mem = fixed + (z.train + z.test) * z.pixels / MB + min(cfg.fit.batch_size, n_fit) * z.phi * 4 / MB  # fmt: skip
        cpu_extra = min(cfg.fit.batch_size, n_fit) * px * k["siren_fit_mb_per_kpixel"] * siren
        disk = n_fit * z.phi * k["phi_bytes_per_number"]
    elif rule == "read":
        seconds, mem = z.test * read_s, fixed + z.test * tok16
        cpu_extra = min(PREDICT_BATCH, z.test) * act
    elif rule == "tokenflow":
        seconds, mem = z.test * read_s * TOKENFLOW_PASSES, fixed + z.test * tok16
        cpu_extra = min(PREDICT_BATCH, z.test) * act
    elif rule == "interventions":
        seconds = z.test * read_s * _intervention_passes(cfg)
        mem = fixed + 3 * z.test * tok16
        cpu_extra = min(PREDICT_BATCH, z.test) * act
    elif rule == "fresh_reader":
        # every family trains with the transformer's budget, then is read once, under
        # each intervention and by the token-flow probe; families cost a fraction of it
        steps = _fresh_epochs(cfg) * z.fitted_train
        passes = 1 + TOKENFLOW_PASSES + _intervention_passes(cfg)
        per_family = steps * k["reader_train_s_per_image"] * reader + z.test * read_s * passes
        seconds = per_family * sum(k["reader_family_cost"][f] for f in cfg.probes.reader_families)
        mem = fixed + n_fit * tok16
        cpu_extra = max(cfg.training.batch_size * act * 3, min(PREDICT_BATCH, z.test) * act)
    elif rule == "geometry":
        d = z.phi
        seconds = (
            k["geometry_s_per_pair_feature"] * z.probe_test**2 * d
            + k["geometry_s_per_train_feature"] * z.probe_train * d
        )
        mem = fixed + d * (k["geometry_bytes_per_train_number"] * z.probe_train + k["geometry_bytes_per_test_number"] * z.probe_test) / MB  # fmt: skip
    else:
        seconds, mem = k["fixed_s"].get(rule, 30.0), fixed
    cpu_mem = mem + cpu_extra
    return {"seconds": seconds, "cpu_mb": cpu_mem, "gpu_mb": mem, "disk": disk}


@dataclass(frozen=True)
class RulePlan:
    rule: str
    jobs: int
    gpu: bool
    hours_per_job: float
    cpus: int
    mem_mb: float  # peak per job
    disk_gb: float  # all jobs

    @property
    def gpu_hours(self) -> float:
        return self.jobs * self.hours_per_job if self.gpu else 0.0

    @property
    def cpu_hours(self) -> float:
        return self.jobs * self.hours_per_job * self.cpus


def runs_per_job(cfg: StudyConfig) -> int:
    combos = len(cfg.combination_names())
    return len(cfg.seeds) * (combos if cfg.batch_runs == "dataset" else 1)


def jobs_of(cfg: StudyConfig, rule: str) -> int:
    per_dataset = {"meta_train": len(cfg.seeds) * len(cfg.combination_names())}
    if rule in STUDY_RULES:
        return 1
    if rule in DATASET_RULES:
        return len(cfg.datasets)
    if rule in per_dataset:
        return len(cfg.datasets) * per_dataset[rule]
    runs = len(cfg.seeds) * len(cfg.combination_names())
    return len(cfg.datasets) * runs // runs_per_job(cfg)


def on_gpu(cfg: StudyConfig, rule: str) -> bool:
    """GPU rules run on a GPU unless the config says device: cpu."""
    return rule in GPU_RULES and cfg.device != "cpu"


def job_cost(
    cfg: StudyConfig, rule: str, dataset: str | None, costs: dict, combo: str | None = None
) -> tuple[float, float]:
    """(wall seconds, peak MB) of one job of ``rule`` (the worst dataset and combination
    when None)."""
    k = costs["constants"]
    worst = (0.0, 0.0)
    for name in [dataset] if dataset else cfg.datasets:
        c = run_cost(cfg, rule, name, costs, combo)
        gpu = on_gpu(cfg, rule)
        n = 1 if rule == "meta_train" or rule in STUDY_RULES + DATASET_RULES else runs_per_job(cfg)
        seconds = k["startup_s"] + n * c["seconds"] / (costs["gpu_speedup"] if gpu else 1.0)
        worst = max(worst[0], seconds), max(worst[1], c["gpu_mb"] if gpu else c["cpu_mb"])
    return worst


def plan(
    cfg: StudyConfig, costs: dict | None = None, threads: dict | None = None
) -> list[RulePlan]:
    costs = costs or load_costs()
    threads = threads or costs.get("threads", {})
    rules = ["stage", "meta_train", "fit", *(s.rule for s in RUN_STAGES), *STUDY_RULES]
    rules.insert(rules.index("findings"), "reconstructions")
    out = []
    for rule in rules:
        seconds, mem = job_cost(cfg, rule, None, costs)
        if rule == "meta_train":  # one job per combination: hours are their mean, not the worst
            combos = cfg.combination_names()
            seconds = sum(job_cost(cfg, rule, None, costs, c)[0] for c in combos) / len(combos)
        disk = sum(
            run_cost(cfg, rule, d, costs)["disk"] * len(cfg.seeds) * len(cfg.combination_names())
            for d in cfg.datasets
        )
        out.append(
            RulePlan(
                rule,
                jobs_of(cfg, rule),
                on_gpu(cfg, rule),
                seconds / 3600,
                int(threads.get(rule, 1)),
                mem,
                disk / 1e9,
            )
        )
    return out


def request(
    cfg: StudyConfig,
    rule: str,
    attempt: int,
    dataset: str | None = None,
    costs: dict | None = None,
    combo: str | None = None,
) -> tuple[int, int]:
    """(mem_mb, runtime in minutes) one Slurm job of ``rule`` asks for on ``attempt``: the
    plan's peak and time with a margin, doubled per retry, never above the site's caps
    (config keys max_mem_mb, max_runtime, set by the site profile)."""
    costs = costs or load_costs()
    seconds, mem = job_cost(cfg, rule, dataset, costs, combo)
    margin = costs["margin"]
    mem_mb = max(margin["min_mem_mb"], math.ceil(mem * margin["mem"] / 100) * 100)
    runtime = max(margin["min_runtime"], math.ceil(seconds * margin["runtime"] / 60))
    grow = 2 ** (attempt - 1)
    mem_mb, runtime = mem_mb * grow, runtime * grow
    if cfg.max_mem_mb:
        mem_mb = min(mem_mb, cfg.max_mem_mb)
    if cfg.max_runtime:
        runtime = min(runtime, cfg.max_runtime)
    return int(mem_mb), int(runtime)


def table(cfg: StudyConfig, costs: dict | None = None) -> str:
    """The plan as text: one row per rule, then totals."""
    costs = costs or load_costs()
    rows = plan(cfg, costs)
    head = f"{'rule':<16}{'jobs':>6}{'GPU-h':>10}{'CPU-h':>10}{'peak mem/job':>14}{'disk':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.rule:<16}{r.jobs:>6}{r.gpu_hours:>10.1f}{r.cpu_hours:>10.1f}"
            f"{r.mem_mb / 1000:>11.2f} GB{r.disk_gb:>8.1f} GB"
        )
    lines += [
        "-" * len(head),
        (
            f"{'total':<16}{sum(r.jobs for r in rows):>6}{sum(r.gpu_hours for r in rows):>10.1f}"
            f"{sum(r.cpu_hours for r in rows):>10.1f}{max(r.mem_mb for r in rows) / 1000:>11.2f}"
            f" GB{sum(r.disk_gb for r in rows):>8.1f} GB"
        ),
        "",
        f"Per-image constants: {COSTS_PATH.name}, measured on {costs['machine']}.",
        f"GPU time = CPU time / {costs['gpu_speedup']} ({costs['gpu_speedup_note']}).",
        (
            "peak mem/job: the largest job's peak RSS (GPU rules on a GPU hold batch"
            " activations in GPU memory); disk: fitted.nc, model.pt, checkpoint.pt of every run."
        ),
    ]
    return "\n".join(lines)
