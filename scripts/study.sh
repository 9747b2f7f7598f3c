#!/usr/bin/env bash
# The main job: install, then run the default study (embedded digits data) on this machine.
# Extra arguments go to snakemake, e.g. `bash scripts/study.sh --configfile config/smoke.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
snakemake --profile profiles/local "$@"
for arg in "$@"; do   # a dry-run (README: `-n`) has no results to report on
    case $arg in -n | --dry-run | --dryrun) exit 0 ;; esac
done
snakemake --profile profiles/local --report results/report.html "$@"
echo "Done: results/FINDINGS.md, results/figures/, results/stats/, results/report.html"
