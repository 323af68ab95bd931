# Sourced by the other scripts: create the virtual environment if it is missing or out of date
# (pyproject.toml changed), then put it first on PATH. Override its place with SHOWO_TURBO_VENV.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SHOWO_TURBO_VENV:-$ROOT/.venv}
want=$(sha1sum "$ROOT/pyproject.toml" | cut -c1-16)
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.showo-turbo-stamp" 2>/dev/null)" != "$want" ]]; then
  echo "[showo-turbo] installing the environment into $VENV (log: $VENV/install.log) ..." >&2
  python3 -m venv "$VENV"
  # torch 2.13.0 CPU build first: on this machine it comes from local disk. GPU users: see README.
  if ! { "$VENV/bin/pip" install --disable-pip-version-check "torch==2.13.0" \
         && "$VENV/bin/pip" install --disable-pip-version-check -e "$ROOT[dev]"; } >"$VENV/install.log" 2>&1; then
    tail -n 30 "$VENV/install.log" >&2
    echo "[showo-turbo] install failed; full log: $VENV/install.log" >&2
    exit 1
  fi
  echo "$want" > "$VENV/.showo-turbo-stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
