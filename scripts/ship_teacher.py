"""Package a finished scratch run as the shipped teacher (teacher/<name>/): weights, card.json, README.md.

    python scripts/ship_teacher.py RUN_DIR teacher/shapes-small [--metrics metrics/teacher.json]

RUN_DIR is a `train_teacher` output folder (checkpoint/ + history.jsonl, e.g. from
scripts/train_teacher.py) trained on the world in data/world; the card records the recipe the run
was trained with (its checkpoint/progress.json) and the hardware it ran on. With --metrics, the scores of a
`dvc repro teacher` run are written into README.md (not a stage dependency, so this does not
invalidate the stage).
"""

import argparse
import sys
import json
import shutil
from pathlib import Path

from showo_turbo.pipeline.errors import run_cli
from showo_turbo.pipeline.io import load_json, save_json
from showo_turbo.pipeline.params import TeacherTrainParams, validate_section
from showo_turbo.training.teacher import make_card, write_card_readme
from showo_turbo.worlds import load_world


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("dest")
    ap.add_argument("--metrics")
    ap.add_argument("--hardware-note", default="")
    args = ap.parse_args()
    run, dest = Path(args.run_dir), Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    if not args.metrics or not (dest / "card.json").is_file():
        world = load_world("data/world")
        prog = load_json(run / "checkpoint" / "progress.json")
        recipe = validate_section(TeacherTrainParams, prog["recipe"], "recipe ")
        if prog["step"] != recipe.steps:
            raise SystemExit(f"{run}: the run stopped at step {prog['step']} of {recipe.steps}; finish it first")
        history = [json.loads(line) for line in open(run / "history.jsonl")]
        card = make_card(world, recipe, prog, history)
        if args.hardware_note:
            card["train"]["note"] = args.hardware_note
        shutil.copy(run / "checkpoint" / "model.safetensors", dest / "model.safetensors")
        save_json(card, dest / "card.json")
    card = load_json(dest / "card.json")
    metrics = load_json(args.metrics) if args.metrics else None
    write_card_readme(card, metrics, dest / "README.md")
    print(f"shipped teacher in {dest}")


if __name__ == "__main__":
    sys.exit(run_cli(main, "ship_teacher.py"))
