#!/usr/bin/env bash
# Install inrroute and everything the workflow and tests need into ./.venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# torch/torchvision are pinned in pyproject.toml (CPU and CUDA from the same wheel).
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[workflow,dev]'
.venv/bin/python -c "import inrroute, torch, snakemake; print('inrroute ready: torch', torch.__version__)"
