"""Overlays: a params file that adds to another (e.g. params/dm.yaml adds a dm stage), merged key by
key into params.yaml with its comments kept, so that DVC tracks exactly what runs.

    python -m showo_turbo.pipeline.presets params/dm.yaml [--into params.yaml]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from .errors import run_cli
from .io import atomic_path
from .params import ParamsError, parse_params


def merge_overlay(base: dict, extra: dict) -> None:
    """Merge the overlay `extra` into `base` in place, mapping by mapping (other values replace)."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_overlay(base[k], v)
        else:
            base[k] = v


def _plain(x):
    """ruamel's commented mappings and lists as plain dicts and lists (keys keep their types)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def apply_overlay(overlay: str | Path, into: str | Path = "params.yaml") -> Path:
    """Merge `overlay` into the params file `into` (atomically, comments kept); the result must validate."""
    from ruamel.yaml import YAML

    yaml = YAML()
    overlay, into = Path(overlay), Path(into)
    for path in (overlay, into):
        if not path.is_file():
            raise ParamsError(f"{path}: file not found")
    base, extra = yaml.load(into.read_text()), yaml.load(overlay.read_text())
    if not isinstance(extra, dict):
        raise ParamsError(f"{overlay}: top level: expected a mapping")
    merge_overlay(base, extra)
    parse_params(_plain(base), f"{into} + {overlay}")  # refuse before writing
    buf = io.StringIO()
    yaml.dump(base, buf)
    with atomic_path(into) as tmp:
        tmp.write_text(buf.getvalue())
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overlay", help="the overlay, e.g. params/dm.yaml")
    ap.add_argument("--into", default="params.yaml", help="the params file to extend (default: params.yaml)")
    args = ap.parse_args(argv)
    print(f"{apply_overlay(args.overlay, args.into)}: merged {args.overlay}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "showo_turbo.pipeline.presets"))
