# Shared names: the validated study config, run paths, resources.
import math

import yaml
from inrroute.config import from_mapping

# The package re-validates (schema + cross-field checks) so a bad value stops the
# workflow here, before any job starts.
STUDY = from_mapping(config)
RESULTS = STUDY.results_dir
DATASETS = list(STUDY.datasets)
SEEDS = list(STUDY.seeds)
COMBOS = STUDY.combination_names()
RUN = f"{RESULTS}/{{dataset}}/seed{{seed}}/{{combo}}"
ENV = "../../envs/inrroute.yaml"

# Jobs read the resolved config (schema defaults filled, --config overrides applied)
# from one file, so a stage run by hand sees exactly what the workflow saw.
RESOLVED_CONFIG = f"{RESULTS}/resolved_config.yaml"
_resolved = yaml.safe_dump(STUDY.to_dict(), sort_keys=True)
if not os.path.exists(RESOLVED_CONFIG) or open(RESOLVED_CONFIG).read() != _resolved:
    os.makedirs(RESULTS, exist_ok=True)
    _tmp = f"{RESOLVED_CONFIG}.{os.getpid()}.tmp"
    with open(_tmp, "w") as fh:
        fh.write(_resolved)
    os.replace(_tmp, RESOLVED_CONFIG)


wildcard_constraints:
    dataset="|".join(DATASETS),
    seed=r"\d+",
    combo=r"cluster[01]_route[01]_biasroute[01]_densefit[01]",


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
RUNS_PER_JOB = math.prod(len(values) for values in BATCH_RUNS.values())


def batch_files(name):
    """One file of every run one job handles, with the batch's wildcards left open."""
    return expand(f"{RUN}/{name}", **BATCH_RUNS, allow_missing=True)


def per_job(minutes):
    """Runtime of a batched job: minutes per run, times its runs, growing with retries."""
    return scaled(minutes * RUNS_PER_JOB)


def scaled(base):
    """A resource that grows with each retry (attempt 1, 2, ...)."""
    return lambda wildcards, attempt: base * attempt
