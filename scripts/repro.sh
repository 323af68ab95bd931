#!/usr/bin/env bash
# The main job: the whole DVC pipeline on params.yaml (creates the environment first if missing).
# Extra arguments go to `dvc repro` (e.g. a stage name).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# params.yaml first: DVC deletes a stage's outputs before the stage could refuse a typo.
python -m showo_turbo.pipeline.params params.yaml
dvc repro "$@"
# The README's headline table, from the evaluate stage's metrics (when that stage has run).
if [[ -f metrics/evaluate.json ]]; then python -m showo_turbo.evaluation.results --readme README.md; fi
