#!/usr/bin/env bash
# Copy the default study's headline results into docs/ for the README ("What the answer
# looks like"): run the study first (bash scripts/study.sh), then this.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-results}
for fig in tokenflow interventions; do
    cp "$RESULTS/figures/$fig.png" "docs/$fig.png"
done
cp "$RESULTS/FINDINGS.md" docs/FINDINGS.md
echo "docs/: tokenflow.png, interventions.png, FINDINGS.md from $RESULTS"
