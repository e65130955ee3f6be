#!/usr/bin/env bash
# An ICB evaluation of A&E attendances and unplanned admissions with SROI (scenario kent-ae).
# One command from the repository root:  bash analyses/02-icb-ae-admissions-sroi/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/analyses/02-kent-ae}
.venv/bin/spevidence synth --scenario kent-ae --seed 11 --out "$OUT/data"
.venv/bin/spevidence run protocols/kent-ae.yaml --data "$OUT/data" --out "$OUT"
