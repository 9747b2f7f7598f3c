# Shared names, all derived from the package's vocabulary (inrroute.study) and the
# validated config: run paths, per-rule config params, batching, resources.
import hashlib

import yaml
from inrroute import plan, study
from inrroute.config import from_mapping
from inrroute.provenance import canonical, rule_values

# The package re-validates (schema + cross-field checks) so a bad value stops the
# workflow here, before any job starts.
STUDY = from_mapping(config)
RESULTS = STUDY.results_dir
DATASETS = list(STUDY.datasets)
SEEDS = list(STUDY.seeds)
COMBOS = STUDY.combination_names()
RUN = study.run_path(RESULTS, "{dataset}", "{seed}", "{combo}")
ENV = "../../envs/inrroute.yaml"

# Jobs read the resolved config (schema defaults filled, --config overrides applied) from
# a file named by its content, outside results_dir: a dry run writes nothing there, and
# another invocation with another config never changes the file a running job reads. The
# rules name it through $INRROUTE_CONFIG, so their command text (Snakemake's "code" rerun
# trigger) stays the same when the config changes; what a rule depends on is its params.
_resolved = yaml.safe_dump(STUDY.to_dict(), sort_keys=True)
CONFIG_FILE = os.path.abspath(
    f".snakemake/inrroute/config-{hashlib.sha256(_resolved.encode()).hexdigest()[:16]}.yaml"
)
if not os.path.exists(CONFIG_FILE):
    os.makedirs(os.path.dirname(CONFIG_FILE), exist_ok=True)
    _tmp = f"{CONFIG_FILE}.{os.getpid()}.tmp"
    with open(_tmp, "w") as fh:
        fh.write(_resolved)
    os.replace(_tmp, CONFIG_FILE)
os.environ["INRROUTE_CONFIG"] = CONFIG_FILE


envvars:
    "INRROUTE_CONFIG",


def config_of(rule):
    """params: the config values `rule` depends on (study.RULE_CONFIG), by value, so a
    changed value reruns exactly the rules that use it."""

    def values(wildcards):
        return canonical(rule_values(STUDY, rule, wildcards.get("dataset")))

    return values


wildcard_constraints:
    dataset="|".join(DATASETS),
    seed=r"\d+",
    combo=study.COMBINATION_PATTERN,


def run_files(name):
    """One output file of every run of the study."""
    return expand(f"{RUN}/{name}", dataset=DATASETS, seed=SEEDS, combo=COMBOS)


# The per-run stages after meta-training handle several runs per job (config key
# batch_runs): all seeds of a (dataset, combination), or all runs of a dataset. The files
# stay one per run; a job pays Python's and torch's start-up once instead of once per run,
# which on a small machine costs more than these stages themselves.
# BATCH: the wildcards naming one job; BATCH_RUNS: the values filled in within a job.
if STUDY.batch_runs == "dataset":
    BATCH, BATCH_RUNS = "{dataset}", {"seed": SEEDS, "combo": COMBOS}
else:
    BATCH, BATCH_RUNS = "{dataset}/{combo}", {"seed": SEEDS}


def batch_files(name):
    """One file of every run one job handles, with the batch's wildcards left open."""
    return expand(f"{RUN}/{name}", **BATCH_RUNS, allow_missing=True)


def planned(rule):
    """mem_mb and runtime of a Slurm job of `rule` from the cost model (`inrroute plan`,
    inrroute/plan.py) for this config and the job's dataset: the plan's peak and time with
    a margin, doubled on each retry, never above the site's max_mem_mb / max_runtime
    (profiles/slurm: MAX_MEM_MB, MAX_RUNTIME)."""

    def get(which):
        def value(wildcards, attempt):
            dataset = getattr(wildcards, "dataset", None)
            combo = getattr(wildcards, "combo", None)
            return plan.request(STUDY, rule, attempt, dataset, combo=combo)[which]

        return value

    return {"mem_mb": get(0), "runtime": get(1)}
