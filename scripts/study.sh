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
# The report goes next to the results the configs name (results_dir of the last
# --configfile that sets it, laid over config/config.yaml as the Snakefile does).
results=$(python - "$@" <<'PY'
import sys, yaml
files, taking = ["config/config.yaml"], False
for arg in sys.argv[1:]:
    if arg in ("--configfile", "--configfiles"):
        taking = True
    elif arg.startswith("-"):
        taking = False
    elif taking:
        files.append(arg)
results = "results"
for path in files:
    results = (yaml.safe_load(open(path)) or {}).get("results_dir", results)
print(results)
PY
)
snakemake --profile profiles/local --report "$results/report.html" "$@"
echo "Done: $results/FINDINGS.md, $results/figures/, $results/stats/, $results/report.html"
