#!/usr/bin/env bash
# Copy a study's headline results into docs/ for the README ("What the answer looks like"):
# run the study first (bash scripts/study.sh), then this.
#   bash scripts/docs_figures.sh                                  # default study -> docs/
#   bash scripts/docs_figures.sh results/fashion_study fashion_   # -> docs/fashion_*.png ...
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-results}
PREFIX=${2:-}
for fig in tokenflow interventions reader_families; do
    cp "$RESULTS/figures/$fig.png" "docs/$PREFIX$fig.png"
done
cp "$RESULTS/FINDINGS.md" "docs/${PREFIX}FINDINGS.md"
echo "docs/: ${PREFIX}tokenflow.png, ${PREFIX}interventions.png, ${PREFIX}reader_families.png, ${PREFIX}FINDINGS.md from $RESULTS"
