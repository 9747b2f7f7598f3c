# inrroute: is the class signal in meta-learned SIREN weights clustered or routed?
# Thin by design: load and validate the config, include one .smk per stage.
# Every rule calls `inrroute <stage>`; see DESIGN.md section 7.
import os
import shutil
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# Rules call `inrroute` through PATH. Put the bin directory of the interpreter running
# Snakemake (a venv's, a conda env's) first when `inrroute` there is not what PATH finds,
# so `.venv/bin/snakemake ...` works without activating the venv. os.environ reaches every
# job: local shells inherit it and the Slurm plugin submits with `sbatch --export=ALL`.
# With --sdm conda, Snakemake puts the rule's env first anyway.
_bin = os.path.dirname(sys.executable)
_cli = os.path.join(_bin, "inrroute")
if os.access(_cli, os.X_OK) and shutil.which("inrroute") != _cli:
    os.environ.update(PATH=_bin + os.pathsep + os.environ.get("PATH", ""))
# Where this workflow lives: envs/inrroute.post-deploy.sh installs the package from here.
os.environ.update(INRROUTE_WORKFLOW_DIR=workflow.basedir)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# common.smk checks the config with the package first (clear messages naming key, value
# and what is allowed); snakemake's validate then fills the schema defaults into `config`.
include: "workflow/rules/common.smk"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/read.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.study.input,
