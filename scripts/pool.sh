#!/usr/bin/env bash
# Analyse finished studies of different datasets together, each with its own recipe:
#   bash scripts/pool.sh results results/fashion_study results/pooled
# (the default digits study and the Fashion-MNIST study -> results/pooled/). Every
# argument but the last is a finished study's results folder (with summary.nc); the last
# is the output folder: summary.nc, stats/, figures/ and FINDINGS.md, per dataset and
# pooled. The statistics settings come from config/config.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    echo "usage: bash scripts/pool.sh STUDY_RESULTS STUDY_RESULTS [...] OUT_DIR" >&2
    exit 2
fi
export PATH="$PWD/.venv/bin:$PATH"
out=${*: -1}
summaries=()
for study in "${@:1:$#-1}"; do summaries+=("$study/summary.nc"); done
mkdir -p "$out"
inrroute pool --summary "${summaries[@]}" --out "$out/summary.nc"
inrroute stats --config config/config.yaml --summary "$out/summary.nc" --out-dir "$out/stats"
inrroute figures --summary "$out/summary.nc" --stats-dir "$out/stats" --out-dir "$out/figures"
inrroute findings --config config/config.yaml --summary "$out/summary.nc" \
    --stats-dir "$out/stats" --out "$out/FINDINGS.md"
echo "Done: $out/FINDINGS.md, $out/figures/, $out/stats/"
