#!/usr/bin/env bash
# Post-deploy script of envs/inrroute.yaml. Snakemake (--sdm conda) copies the env file to
# .snakemake/conda/<hash>.yaml, creates the env, copies this script beside it and runs it
# once inside the new env. Relative paths would point into .snakemake/, so the package and
# its locked dependencies are installed from the workflow's own directory, which the
# Snakefile exports as INRROUTE_WORKFLOW_DIR (fallback: the working directory).
# The line below ties the env's hash to the lock: a new lock rebuilds the env.
# requirements.lock sha256: 74e791b362faf28273fe6258939ae2c536c0b9774dcac460fec470191473d59e
set -euo pipefail
dir=${INRROUTE_WORKFLOW_DIR:-$PWD}
if [[ ! -f $dir/envs/requirements.lock || ! -f $dir/pyproject.toml ]]; then
    echo "inrroute post-deploy: no workflow at '$dir'; set INRROUTE_WORKFLOW_DIR" >&2
    exit 1
fi
python -m pip install --no-input --quiet --constraint "$dir/envs/requirements.lock" -e "$dir"
inrroute --help > /dev/null
echo "inrroute installed into $(python -c 'import sys; print(sys.prefix)') from $dir"
