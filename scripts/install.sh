#!/usr/bin/env bash
# Install inrroute and everything the workflow and tests need into ./.venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Every dependency at the version the tests passed with (envs/requirements.lock, made by
# scripts/lock.sh); torch/torchvision are also pinned in pyproject.toml (CPU and CUDA from
# the same wheel).
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --constraint envs/requirements.lock -e '.[workflow,dev]'
.venv/bin/python -c "import inrroute, torch, snakemake; print('inrroute ready: torch', torch.__version__)"
