#!/usr/bin/env bash
# The test suite (creates the environment first if missing). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# The explorer's browser test needs headless Chromium and its driver (Debian packages).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "[showo-turbo] installing chromium + chromium-driver (log: .venv/apt.log) ..." >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver; } \
    >"$VENV/apt.log" 2>&1 || echo "[showo-turbo] could not install chromium; see $VENV/apt.log (the browser test will fail)" >&2
fi
python -m pytest "$@"
