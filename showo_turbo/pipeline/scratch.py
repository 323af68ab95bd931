"""Scratch copies of the project at another scale (used by `scripts/micro.sh` and the tests).

A preset is applied the only way DVC can see it: `params/<preset>.yaml` is copied over the copy's
`params.yaml` and each overlay (`params/<overlay>.yaml`, e.g. dm) is merged into it, so `dvc repro`
there tracks exactly the values it runs with.

    python -m showo_turbo.pipeline.scratch --preset micro /tmp/showo-micro --repro
    python -m showo_turbo.pipeline.scratch --preset showo-256 --overlay showo-micro /tmp/showo-256-micro
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from .errors import run_cli
from .io import project_root
from .params import load_params
from .presets import apply_overlay


def project_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (what a commit of the working tree would hold)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout.decode()
    return [root / p for p in out.split("\0") if p and (root / p).is_file()]


def _params_file(src: Path, name: str) -> Path:
    path = src / "params" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (src / "params").glob("*.yaml"))
        raise FileNotFoundError(f"unknown preset {name!r}; known: {', '.join(known)}")
    return path


def make_scratch_copy(dest: str | Path, preset: str | None = "micro", src: str | Path | None = None,
                      overlays: Sequence[str] = ()) -> Path:
    """Copy the project's working tree to `dest` (a fresh git repo), apply `preset`, then merge `overlays`."""
    src = project_root(src)
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    for f in project_files(src):
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    if preset:
        preset_file = _params_file(src, preset)
        load_params(preset_file)  # refuse a broken preset before copying it in
        shutil.copy2(preset_file, dest / "params.yaml")
    for overlay in overlays:
        apply_overlay(_params_file(src, overlay), dest / "params.yaml")
    git = ["git", "-c", "user.name=showo-turbo", "-c", "user.email=scratch@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", f"scratch copy ({preset or 'default'} preset)"], cwd=dest, check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", help="empty or missing folder for the copy")
    ap.add_argument("--preset", default="micro", help="params/<preset>.yaml to use (default: micro)")
    ap.add_argument("--overlay", action="append", default=[], help="params/<overlay>.yaml to merge in (repeatable)")
    ap.add_argument("--repro", action="store_true", help="run `dvc repro` in the copy")
    args = ap.parse_args(argv)
    dest = make_scratch_copy(args.dest, args.preset, overlays=args.overlay)
    print(f"scratch copy with preset {args.preset!r}{''.join(f' + {o!r}' for o in args.overlay)}: {dest}")
    if args.repro:
        return subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=dest).returncode
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "showo_turbo.pipeline.scratch"))
