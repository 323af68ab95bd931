#!/usr/bin/env bash
# The main job: the whole DVC pipeline on params.yaml (creates the environment first if missing).
# Extra arguments go to `dvc repro` (e.g. a stage name).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
dvc repro "$@"
