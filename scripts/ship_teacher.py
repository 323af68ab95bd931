"""Package a finished scratch run as the shipped teacher (teacher/<name>/): weights, card.json, README.md.

    python scripts/ship_teacher.py RUN_DIR teacher/shapes-small [--metrics metrics/teacher.json]

RUN_DIR is a `train_teacher` output folder (checkpoint/ + history.jsonl, e.g. from
scripts/train_teacher.py) trained on the world in data/world; the card records the recipe the run
was trained with (its checkpoint/progress.json) and the hardware it ran on. With --metrics, the scores of a
`dvc repro teacher` run are written into README.md (not a stage dependency, so this does not
invalidate the stage).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from showo_turbo.pipeline.errors import run_cli
from showo_turbo.pipeline.io import load_json, save_json
from showo_turbo.pipeline.params import TeacherTrainParams, validate_section
from showo_turbo.training.teacher import make_card
from showo_turbo.worlds import load_world


def _hardware_words(hw: dict) -> str:
    return f"{hw['gpu']} (GPU)" if hw.get("gpu") else f"{hw.get('cpu', '?')} ({hw.get('cpu_threads', '?')} threads)"


def write_card_readme(card: dict, metrics: dict | None, path: str | Path) -> None:
    """Human-readable model card: how it was trained, on what, and (with `metrics`) how it scores."""
    tr, tp = card["train"], card["train_params"]
    hw = tr.get("hardware", {})
    lines = [
        "# Shipped Shapes teacher", "",
        "A small Show-o-architecture model (Phi backbone with qk-layernorm, Show-o's vocabulary layout and",
        "omni-attention) trained from scratch on the Shapes world by the pipeline's own recipe",
        "(`teacher.source: scratch`, `showo_turbo/training/teacher.py`). `dvc repro teacher` uses it when",
        "`teacher.source: shipped` and refuses it if the world's tokenizers or sizes differ from `card.json`.", "",
        "## Training", "",
        f"- recipe: `teacher.train` in `card.json` (preset `{tp['preset']}`, {tp['steps']} steps, batch {tp['batch_t2i']} T2I"
        f" + {tp['batch_mmu']} MMU, AdamW lr {tp['lr']}, warmup {tp['warmup_steps']}, cosine to {tp['min_lr_ratio']}x, {tp['precision']})",
        f"- trained for {tr['steps']} steps in {tr['minutes']} minutes on {_hardware_words(hw)}, torch {hw.get('torch', '?')}"
        + (f"; {tr['note']}" if tr.get("note") else ""),
        "- world: `world_params` in `card.json` (the default `params.yaml` world)",
        "- final losses: " + ", ".join(f"{k} {card['history'][-1][k]:.3f}" for k in ("t2i", "mmu", "lm")) if card.get("history") else "",
        "",
    ]
    if metrics:
        steps = sorted(int(k.split("_")[1]) for k in metrics["t2i"])
        scales = list(next(iter(metrics["t2i"].values())))
        lines += ["## Scores (`metrics/teacher.json`)", "", "ShapesEval (mean of the six GenEval categories) on held-out prompts:", "",
                  "| steps | " + " | ".join(scales) + " |", "|---" * (len(scales) + 1) + "|"]
        for t in steps:
            row = metrics["t2i"][f"steps_{t}"]
            lines.append(f"| {t} | " + " | ".join(f"{row[s]['score']:.3f}" for s in scales) + " |")
        best = max(scales, key=lambda s: metrics["t2i"][f"steps_{steps[-1]}"][s]["score"])
        b = metrics["t2i"][f"steps_{steps[-1]}"][best]
        categories = [c for c in b if c not in ("score", "ci_low", "ci_high", "n_images")]
        lines += ["", f"At {steps[-1]} steps with {best}: " + ", ".join(f"{c} {b[c]:.2f}" for c in categories)
                  + f" (95% CI {b['ci_low']:.3f}-{b['ci_high']:.3f}).", "",
                  f"MMU answer accuracy (greedy AR, exact match): {metrics['mmu']['accuracy']:.3f} ("
                  + ", ".join(f"{k[9:]} {v:.2f}" for k, v in metrics["mmu"].items() if k.startswith("accuracy_")) + ")."]
    Path(path).write_text("\n".join(lines) + "\n")

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
