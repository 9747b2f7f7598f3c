"""Typed study configuration, validated once against workflow/schemas/config.schema.yaml.

The JSON schema holds every default and range; this module turns a validated mapping
into frozen dataclasses and adds the checks a schema cannot express.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError
from .study import (
    ALL_COMBINATION_NAMES,
    BASELINE,
    COMBINATION_TEMPLATE,
    DATASETS,
    FACTOR_NAMES,
    READER_FAMILIES,
    Combination,
    VocabularyError,
    parse_combination,
)

__all__ = ["BASELINE", "FACTOR_NAMES", "Combination", "ConfigError", "StudyConfig"]

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
# Images per split of every dataset as staged, so caps and probe sizes are checked before
# any job starts (the vocabulary owns them).
SPLIT_SIZES = {name: {"train": d.train, "test": d.test} for name, d in DATASETS.items()}


@dataclass(frozen=True)
class ModelConfig:
    width: int = 32
    depth: int = 2
    omega: float = 10.0
    inner_steps: int = 3
    alpha_init_low: float = 0.1
    alpha_init_high: float = 1.0
    out_scale_init: float = 0.1


@dataclass(frozen=True)
class ReaderConfig:
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    layer_scale: float = 0.1
    modulation_scale: float = 500.0


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    alpha_lr: float = 1e-2
    weight_decay: float = 1e-4
    cls_loss_weight: float = 0.01
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    threads: int | None = None


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _section_class(name: str, section: str) -> type:
    """A frozen dataclass of one schema section's keys, types and defaults."""
    types = {"number": float, "integer": int, "boolean": bool, "string": str}
    props = load_schema()["properties"][section]["properties"]
    fields = [(k, types[p["type"]], field(default=p["default"])) for k, p in props.items()]
    cls = make_dataclass(name, fields, frozen=True)
    cls.__module__ = __name__  # so checkpoints and pickles name this module
    return cls


# The factors' hyperparameters are defined by the schema alone, so a new factor adds its
# keys there and nowhere else in the config code.
FactorConfig = _section_class("FactorConfig", "factors")


@dataclass(frozen=True)
class FitConfig:
    batch_size: int = 512
    train_images: int | None = None  # stratified train sample fitted per run; None = all


@dataclass(frozen=True)
class ProbeConfig:
    # geometry probes' stratified sample per split (None = all); see the schema
    sample: dict[str, int | None] = field(default_factory=lambda: {"train": 5000, "test": 5000})
    knn_k: int = 10
    intervention_draws: int = 8
    fresh_reader_epochs: int | None = None  # None: training.epochs
    fresh_reader_spec: str = "trained"
    reader_families: tuple[str, ...] = READER_FAMILIES


@dataclass(frozen=True)
class StatsConfig:
    bootstrap: int = 1000


# Thresholds of the pre-stated verdict rules: defined by the schema's `verdicts` section.
VerdictConfig = _section_class("VerdictConfig", "verdicts")


@dataclass(frozen=True)
class StudyConfig:
    results_dir: str = "results"
    data_root: str = "data"
    datasets: tuple[str, ...] = ("digits",)
    seeds: tuple[int, ...] = (0, 1, 2)
    combinations: tuple[str, ...] = ("all",)
    caps: dict[str, dict[str, int | None]] = field(default_factory=dict)
    stage_seed: int = 0
    batch_runs: str = "combination"
    device: str = "auto"
    bf16: bool = False
    model: ModelConfig = ModelConfig()
    reader: ReaderConfig = ReaderConfig()
    training: TrainingConfig = TrainingConfig()
    factors: FactorConfig = field(default_factory=FactorConfig)
    fit: FitConfig = FitConfig()
    probes: ProbeConfig = ProbeConfig()
    stats: StatsConfig = StatsConfig()
    verdicts: VerdictConfig = field(default_factory=VerdictConfig)
    # the site's limits per job (set by the site profile, profiles/slurm): no retry asks more
    max_runtime: int | None = None
    max_mem_mb: int | None = None

    def combination_names(self) -> list[str]:
        if "all" in self.combinations:
            return list(ALL_COMBINATION_NAMES)
        return list(self.combinations)

    def fresh_reader_epochs(self) -> int:
        """The fresh readers' epochs: the trained reader's budget unless set explicitly."""
        return self.probes.fresh_reader_epochs or self.training.epochs

    def cap(self, dataset: str, split: str) -> int | None:
        return self.caps.get(dataset, {}).get(split)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["datasets"], d["seeds"] = list(self.datasets), list(self.seeds)
        d["combinations"] = list(self.combinations)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _validator_with_defaults() -> type:
    """A Draft 2020-12 validator that also fills in the schema's defaults."""
    base = jsonschema.Draft202012Validator
    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = json.loads(json.dumps(sub["default"]))
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _describe(error: jsonschema.ValidationError) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        where = ".".join(path) + "." if path else ""
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), known, n=1)
            hints.append(
                f"config key {where + str(k)!r} (value {error.instance[k]!r}) is not a known key"
                + (f" (did you mean {where + close[0]!r}?)" if close else "")
            )
        return (
            "; ".join(hints)
            + f"; allowed keys{' under ' + repr('.'.join(path)) if path else ''}: {known}"
        )
    key = ".".join(path) or "(top level)"
    rule = error.schema.get("description", "")
    allowed = {
        k: error.schema[k]
        for k in ("enum", "type", "minimum", "exclusiveMinimum", "pattern", "minItems")
        if k in error.schema
    }
    return (
        f"config key {key!r} has bad value {error.instance!r}: {error.message}"
        + (f"; allowed: {allowed}" if allowed else "")
        + (f" ({rule.strip()})" if rule and path else "")
    )


PATH_KEYS = ("results_dir", "data_root")


def _check_values(node: Any, path: str = "") -> None:
    """What JSON schema cannot refuse: NaN/Inf (they pass every bound) and blank paths."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_values(value, f"{path}.{i}")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(
            f"config key {path!r} has bad value {node!r}: not a finite number; allowed: a "
            "finite number in the key's range (see workflow/schemas/config.schema.yaml)"
        )
    elif path in PATH_KEYS and isinstance(node, str) and not node.strip():
        raise ConfigError(
            f"config key {path!r} has bad value {node!r}: an empty or blank path; allowed: a "
            "non-empty folder path"
        )


def validate_mapping(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a raw mapping against the schema; return a copy with defaults filled."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {type(raw).__name__}"
        )
    _check_values(raw or {})
    data = json.loads(json.dumps(raw or {}))
    validator = _validator_with_defaults()(load_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(map(_describe, errors)))
    return data


def from_mapping(raw: dict[str, Any] | None) -> StudyConfig:
    """Validate a mapping (e.g. Snakemake's ``config``) and build the typed config."""
    d = validate_mapping(raw)
    cfg = StudyConfig(
        results_dir=d["results_dir"],
        data_root=d["data_root"],
        datasets=tuple(d["datasets"]),
        seeds=tuple(d["seeds"]),
        combinations=tuple(d["combinations"]),
        caps={k: dict(v) for k, v in d["caps"].items()},
        stage_seed=d["stage_seed"],
        batch_runs=d["batch_runs"],
        device=d["device"],
        bf16=d["bf16"],
        model=ModelConfig(**d["model"]),
        reader=ReaderConfig(**d["reader"]),
        training=TrainingConfig(**d["training"]),
        factors=FactorConfig(**d["factors"]),
        fit=FitConfig(**d["fit"]),
        probes=ProbeConfig(
            **{**d["probes"], "reader_families": tuple(d["probes"]["reader_families"])}
        ),
        stats=StatsConfig(**d["stats"]),
        verdicts=VerdictConfig(**d["verdicts"]),
        max_runtime=d["max_runtime"],
        max_mem_mb=d["max_mem_mb"],
    )
    _check_cross_fields(cfg)
    return cfg


def _check_cross_fields(cfg: StudyConfig) -> None:
    m, r = cfg.model, cfg.reader
    if m.alpha_init_high <= m.alpha_init_low:
        raise ConfigError(
            f"config key 'model.alpha_init_high' has bad value {m.alpha_init_high}: it must "
            f"exceed 'model.alpha_init_low' ({m.alpha_init_low}); allowed: a number > "
            f"{m.alpha_init_low}"
        )
    if r.dim % r.heads:
        raise ConfigError(
            f"config key 'reader.dim' has bad value {r.dim}: it must be divisible by "
            f"'reader.heads' ({r.heads}); allowed: a multiple of {r.heads}"
        )
    if "all" in cfg.combinations and len(cfg.combinations) > 1:
        raise ConfigError(
            f"config key 'combinations' has bad value {list(cfg.combinations)}: 'all' cannot "
            "be mixed with explicit names; allowed: [all] alone, or a list of names like "
            f"{BASELINE!r}"
        )
    for i, name in enumerate(cfg.combinations):
        if name != "all":
            try:
                parse_combination(name)
            except VocabularyError:
                raise ConfigError(
                    f"config key 'combinations.{i}' has bad value {name!r}: not a combination name; "
                    f"allowed: [all], or names {COMBINATION_TEMPLATE} like {BASELINE!r}"
                ) from None
    for name, caps in cfg.caps.items():
        for split, cap in caps.items():
            size = SPLIT_SIZES[name][split]
            if cap is not None and cap > size:
                raise ConfigError(
                    f"config key 'caps.{name}.{split}' has bad value {cap}: {name} has only "
                    f"{size} {split} images; allowed: 10..{size}, or null for all"
                )
    batch = cfg.training.batch_size
    for name in cfg.datasets:
        n_train = cfg.cap(name, "train") or SPLIT_SIZES[name]["train"]
        if batch > n_train:
            raise ConfigError(
                f"config key 'training.batch_size' has bad value {batch}: the {name} train "
                f"split has {n_train} images (caps.{name}.train), fewer than one batch; "
                f"allowed: 1..{n_train}"
            )
    k = cfg.probes.knn_k
    for name in cfg.datasets:
        n_test = cfg.cap(name, "test") or SPLIT_SIZES[name]["test"]
        n_test = min(n_test, cfg.probes.sample["test"] or n_test)
        if k >= n_test:
            raise ConfigError(
                f"config key 'probes.knn_k' has bad value {k}: the {name} test split has "
                f"{n_test} images (caps.{name}.test) and leave-one-out kNN needs k < {n_test}; "
                f"allowed: 1..{n_test - 1}"
            )


def load_config(path: str | Path) -> StudyConfig:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(raw).__name__}")
    return from_mapping(raw)
