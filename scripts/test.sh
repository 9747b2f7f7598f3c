#!/usr/bin/env bash
# The test suite: install, then pytest (unit tests, dry-runs, the smoke study end to end;
# the live-Slurm tests run when tests/slurm/up.sh has brought Slurm up, else they skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
python -m pytest -q -ra "$@"
