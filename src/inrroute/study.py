"""The study's vocabulary: the one owner of every name the rest derives from.

Factors and combination names, the baseline, the datasets, the per-run outputs and the
stages that make them, the statistics tables, the figures, and which rules want a GPU.
The schema (workflow/schemas/config.schema.yaml), the rules (workflow/rules/common.smk),
the summary, statistics, findings, figures, the CLI and the tests derive from here;
tests/test_study.py fails when the schema and this module disagree.

Torch-free and dependency-free on purpose: Snakemake imports it at parse time.

Adding a factor: one entry in FACTORS (here), the model code that implements it, and its
hyperparameters in the schema. Adding a per-run diagnostic: its module (a ``run_<stage>``
function), one RUN_STAGES entry (here), its rule resources (the profiles).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass

from .errors import ConfigError

# ------------------------------------------------------------------ factors and runs

# Factor name -> the tag that spells it in combination names (DESIGN 3, 8).
FACTORS: dict[str, str] = {
    "cluster": "cluster",
    "route": "route",
    "bias_route": "biasroute",
    "dense_fit": "densefit",
}
FACTOR_NAMES: tuple[str, ...] = tuple(FACTORS)
COMBINATION_PATTERN = "_".join(f"{tag}[01]" for tag in FACTORS.values())
COMBINATION_TEMPLATE = "_".join(f"{tag}{{0|1}}" for tag in FACTORS.values())
N_COMBINATIONS = 2 ** len(FACTORS)
_COMBINATION_RE = re.compile(f"^{COMBINATION_PATTERN}$")


class VocabularyError(ConfigError):
    """A name (combination, dataset, stage) is not one the study knows."""


def combination_name(**levels: int | bool) -> str:
    """``cluster0_route1_biasroute0_densefit1`` from factor levels (missing ones are 0)."""
    unknown = set(levels) - set(FACTORS)
    if unknown:
        raise VocabularyError(f"unknown factors {sorted(unknown)}; known: {list(FACTORS)}")
    return "_".join(f"{tag}{int(bool(levels.get(f, 0)))}" for f, tag in FACTORS.items())


def parse_combination(name: str) -> dict[str, int]:
    """Factor levels of a combination name; a bad name is an error naming the pattern."""
    if not isinstance(name, str) or not _COMBINATION_RE.match(name):
        raise VocabularyError(
            f"combination {name!r} is not a valid name; expected {COMBINATION_TEMPLATE}, "
            f"e.g. {BASELINE!r}"
        )
    parts = name.split("_")
    return {f: int(p[-1]) for f, p in zip(FACTORS, parts, strict=True)}


BASELINE = combination_name()


def _combination_name(self) -> str:
    return combination_name(**dataclasses.asdict(self))


def _combination_parse(cls, name: str):
    return cls(**{f: bool(v) for f, v in parse_combination(name).items()})


def _combination_levels(self) -> dict[str, int]:
    return {f: int(v) for f, v in dataclasses.asdict(self).items()}


# One boolean field per factor, so model code reads ``combo.route``; the fields follow
# FACTORS, so a new factor needs no edit here.
Combination = dataclasses.make_dataclass(
    "Combination",
    [(f, bool, dataclasses.field(default=False)) for f in FACTORS],
    frozen=True,
    namespace={
        "__doc__": "One setting of the training factors (DESIGN section 3).",
        "name": property(_combination_name),
        "parse": classmethod(_combination_parse),
        "levels": _combination_levels,
    },
)
Combination.__module__ = __name__

ALL_COMBINATIONS = tuple(
    Combination(*flags) for flags in itertools.product((False, True), repeat=len(FACTORS))
)
ALL_COMBINATION_NAMES = tuple(c.name for c in ALL_COMBINATIONS)

# Grid dimensions of results/summary.nc (DESIGN 5): dataset, seed, then the factors.
GRID_DIMS: tuple[str, ...] = ("dataset", "seed", *FACTORS)


def run_path(results_dir: str, dataset: str, seed: int | str, combo: str) -> str:
    """The folder of one run (DESIGN 8)."""
    return f"{results_dir}/{dataset}/seed{seed}/{combo}"


# ------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class DatasetInfo:
    """Images per split as staged, so caps and probe sizes are checked before any job."""

    train: int
    test: int
    download: bool  # needs a network download (staged on a login node)
    pixels: int = 784  # values per image (channels x height x width), for the cost model


DATASETS: dict[str, DatasetInfo] = {
    # data.load_digits_raw's stratified 75/25 split of scikit-learn's 1,797 images
    "digits": DatasetInfo(train=1347, test=450, download=False, pixels=64),
    "fashion_mnist": DatasetInfo(train=60000, test=10000, download=False, pixels=784),
    "mnist": DatasetInfo(train=60000, test=10000, download=True, pixels=784),
    "cifar10": DatasetInfo(train=50000, test=10000, download=True, pixels=3072),
}
SPLITS = ("train", "test")

# ------------------------------------------------------------------ per-run stages

GEOMETRY_METRICS: tuple[str, ...] = (
    "knn_consistency",
    "knn_accuracy",
    "ncm_accuracy",
    "linear_probe_accuracy",
    "silhouette",
    "fisher_ratio",
)
GEOMETRY_DIAGNOSTICS: tuple[str, ...] = ("linear_probe_iterations", "linear_probe_converged")
INTERVENTIONS_BIAS = ("bias_zero", "bias_shuffle", "bias_mean", "bias_only")
INTERVENTIONS_CONTROL = ("col_zero", "col_shuffle")
INTERVENTIONS = ("none", *INTERVENTIONS_BIAS, *INTERVENTIONS_CONTROL)
# The dataset label of the verdicts combined across datasets (stats.pooled_verdicts).
POOLED = "pooled"
# Fresh reader families (issue 15; inrroute.readers builds them): the first is the trained
# reader's own architecture, whose numbers feed the trained-versus-fresh comparison.
READER_FAMILIES: tuple[str, ...] = ("transformer", "mlp", "deepsets")
FRESH_REFERENCE_FAMILY = READER_FAMILIES[0]


@dataclass(frozen=True)
class SummaryVar:
    """One variable of summary.nc taken from a per-run output file."""

    source: str  # variable in the per-run file (its extra dims come along)
    units: str
    long_name: str


@dataclass(frozen=True)
class RunStage:
    """A per-run stage after meta-training: one rule, one command, one file per run.

    The rule is generated in workflow/rules/read.smk; the command calls
    ``<module>.run_<rule>(model, fitted, cfg, device)`` (``model`` is None when
    ``needs_model`` is False) and writes the Dataset it returns to the run's ``output``.
    """

    rule: str
    output: str
    module: str  # inrroute.<module> holds run_<rule>
    help: str
    needs_model: bool = True
    gpu: bool = True
    summary: dict[str, SummaryVar] = dataclasses.field(default_factory=dict)
    config: tuple[str, ...] = ()  # config keys its results depend on (see RULE_CONFIG)

    @property
    def command(self) -> str:
        return self.rule.replace("_", "-")

    @property
    def uses_torch(self) -> bool:
        """Whether the stage needs torch and a device (geometry: numpy and scikit-learn)."""
        return self.needs_model or self.gpu


RUN_STAGES: tuple[RunStage, ...] = (
    RunStage(
        rule="read",
        output="reader.nc",
        module="reading",
        help="trained-reader accuracy, per class, confusion, PSNR -> reader.nc",
        summary={
            "reader_accuracy": SummaryVar("accuracy", "1", "test accuracy of the trained reader"),
            "psnr": SummaryVar(
                "psnr", "dB", "mean test PSNR of the per-image SIREN fits, on [0, 1]"
            ),
            "per_class_accuracy": SummaryVar(
                "per_class_accuracy", "1", "trained-reader test accuracy per class"
            ),
        },
    ),
    RunStage(
        rule="geometry",
        output="geometry.nc",
        module="probes",
        help="geometry probes of the exposed phi -> geometry.nc",
        needs_model=False,
        gpu=False,
        config=("probes.knn_k", "probes.sample"),
        summary={
            "knn_consistency": SummaryVar(
                "knn_consistency",
                "1",
                "kNN class consistency of test phi (k nearest, cosine, leave-one-out)",
            ),
            "knn_accuracy": SummaryVar(
                "knn_accuracy", "1", "kNN leave-one-out majority-vote accuracy of test phi"
            ),
            "ncm_accuracy": SummaryVar(
                "ncm_accuracy", "1", "nearest-class-mean accuracy (train means, cosine) on test phi"
            ),
            "linear_probe_accuracy": SummaryVar(
                "linear_probe_accuracy",
                "1",
                "logistic-regression probe fitted on train phi, scored on test phi",
            ),
            "silhouette": SummaryVar(
                "silhouette", "1", "silhouette score (cosine) of test phi by class"
            ),
            "fisher_ratio": SummaryVar(
                "fisher_ratio", "1", "trace(S_between) / trace(S_within) of test phi"
            ),
            "linear_probe_converged": SummaryVar(
                "linear_probe_converged",
                "1",
                "1 if the linear probe's lbfgs converged within its iteration cap, else 0",
            ),
        },
    ),
    RunStage(
        rule="fresh_reader",
        output="fresh_reader.nc",
        module="reading",
        help=(
            "train fresh readers of every family in probes.reader_families on frozen "
            "train phi; accuracy, bias interventions, token flow per family -> fresh_reader.nc"
        ),
        config=(
            "probes.reader_families",
            "probes.intervention_draws",
            "probes.knn_k",
            "probes.fresh_reader_epochs",
            "training.epochs",
            "probes.fresh_reader_spec",
            "reader",
            "training.batch_size",
            "training.lr",
            "training.weight_decay",
            "training.grad_clip",
        ),
        summary={
            "fresh_reader_accuracy": SummaryVar(
                "accuracy",
                "1",
                "test accuracy of a fresh reader of each family trained on frozen train phi",
            ),
            "fresh_intervention_accuracy": SummaryVar(
                "intervention_accuracy",
                "1",
                "fresh-reader test accuracy under a bias-column intervention, per family",
            ),
            "fresh_tokenflow_consistency": SummaryVar(
                "tokenflow_consistency",
                "1",
                "kNN class consistency of a fresh reader's representation per reader_depth "
                "(0 = its input, then its hidden layers in order; names in fresh_reader.nc)",
            ),
        },
    ),
    RunStage(
        rule="tokenflow",
        output="tokenflow.nc",
        module="reading",
        help="kNN consistency at every reader depth -> tokenflow.nc",
        config=("probes.knn_k",),
        summary={
            "tokenflow_consistency": SummaryVar(
                "knn_consistency",
                "1",
                "kNN class consistency of the reader's pooled representation per depth",
            ),
        },
    ),
    RunStage(
        rule="interventions",
        output="interventions.nc",
        module="interventions",
        help="bias-column interventions with controls -> interventions.nc",
        config=("probes.intervention_draws",),
        summary={
            "intervention_accuracy": SummaryVar(
                "accuracy", "1", "trained-reader test accuracy under a bias-column intervention"
            ),
        },
    ),
)
RUN_STAGE = {s.rule: s for s in RUN_STAGES}
RUN_OUTPUTS: tuple[str, ...] = tuple(s.output for s in RUN_STAGES)

# Config keys (dotted; ``{dataset}`` is the job's dataset) that each rule's results depend
# on, beyond its input files. A rule reruns exactly when one of its values changes (they are
# its Snakemake params); its outputs record them with those of their inputs (provenance).
# Keys that only say where or how fast things run (results_dir, data_root, device,
# batch_runs, threads, checkpoint_every, fit.batch_size) are not among them.
# (fit.batch_size sets fitted.nc's chunking, not its values.)
RULE_CONFIG: dict[str, tuple[str, ...]] = {
    "stage": ("caps.{dataset}", "stage_seed"),
    "meta_train": (
        "model",
        "reader",
        "training.epochs",
        "training.batch_size",
        "training.lr",
        "training.alpha_lr",
        "training.weight_decay",
        "training.cls_loss_weight",
        "training.grad_clip",
        "factors",
        "bf16",
    ),
    "fit": ("fit.train_images", "stage_seed"),
    **{s.rule: s.config for s in RUN_STAGES},
    "aggregate": (),
    "stats": ("stats", "verdicts"),
    "figures": (),
    "reconstructions": (),
    "findings": ("verdicts",),
}

# Rules that want a GPU: meta-training, fitting, and the per-run stages marked gpu.
GPU_RULES: tuple[str, ...] = ("meta_train", "fit", *(s.rule for s in RUN_STAGES if s.gpu))

# ------------------------------------------------------------------ statistics and figures

STATS_TABLES: tuple[str, ...] = (
    "anova",
    "cluster_effect",
    "geometry_correlation",
    "tokenflow_curve",
    "variants_vs_baseline",
    "intervention_drops",
    "reader_families",
    "verdicts",
    "interaction_means",
)
FIGURES: tuple[str, ...] = (
    "tokenflow",
    "interventions",
    "interactions",
    "geometry_vs_accuracy",
    "reader_families",
)
