#!/usr/bin/env bash
# The pipeline at micro scale, in a scratch copy: params/micro.yaml is copied over params.yaml there
# and `dvc repro` runs on it. Usage: bash scripts/micro.sh [DEST]   (default: a new temp folder)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
dest=${1:-$(mktemp -d -t showo-micro-XXXX)}
python -m showo_turbo.pipeline.scratch --preset micro --repro "$dest"
