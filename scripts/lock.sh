#!/usr/bin/env bash
# Record the versions tested together: envs/requirements.lock from the .venv that
# scripts/install.sh made and the test suite passed in (pip freeze, minus inrroute itself),
# and its hash in envs/inrroute.post-deploy.sh so Snakemake rebuilds conda envs made from
# an older lock. Run after changing dependencies and re-running the tests; commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
{
    echo "# Versions tested together (pip freeze of the test venv, minus inrroute)."
    echo "# Used as pip constraints by scripts/install.sh and envs/inrroute.post-deploy.sh."
    echo "# Refresh: bash scripts/lock.sh"
    "$PY" -m pip freeze --exclude-editable | grep -v -i '^inrroute[= @]'
} > envs/requirements.lock.tmp
mv envs/requirements.lock.tmp envs/requirements.lock
sum=$(sha256sum envs/requirements.lock | cut -d' ' -f1)
sed -i "s/^# requirements.lock sha256: .*/# requirements.lock sha256: $sum/" envs/inrroute.post-deploy.sh
echo "envs/requirements.lock: $(grep -vc '^#' envs/requirements.lock) packages, sha256 $sum"
