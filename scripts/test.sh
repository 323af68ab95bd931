#!/usr/bin/env bash
# The test suite (creates the environment first if missing). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest "$@"
