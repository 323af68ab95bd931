"""Train one teacher candidate outside the pipeline (e.g. several at once on a GPU), then score it.

    python scripts/train_teacher.py RUN_DIR [--set preset=base --set batch_t2i=256 ...]
                                    [--device cuda] [--minutes 5] [--eval]

The recipe is params.yaml's `teacher.train` with the `--set` overrides (validated like params.yaml).
`--minutes` replaces `steps` by what fits that budget on this device, measured on a throw-away model
first (rounded down to a multiple of 500), so the cosine schedule still ends where training does.
`--eval` scores the result (ShapesEval at 2 and 16 steps with params.yaml's `teacher.eval` sampler; MMU AR accuracy) into
RUN_DIR/eval.json. A finished run becomes a shipped teacher with scripts/ship_teacher.py (its card
takes the recipe from the run; RUN_DIR/recipe.json holds it too).
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

from showo_turbo.pipeline.errors import run_cli
from showo_turbo.pipeline.io import save_json
from showo_turbo.model.showo import load_model
from showo_turbo.pipeline.params import TeacherTrainParams, load_params, replace, to_dict, validate_section
from showo_turbo.training.teacher import (TrainingBatches, autocast, default_device, evaluate_teacher, model_config_for,
                                 train_teacher, training_setup)
from showo_turbo.worlds import World, load_world


def steps_per_second(world: World, recipe: TeacherTrainParams, device: str, n: int = 40) -> float:
    """Training steps per second of `recipe` on `device` (a throw-away model; warm-up excluded)."""
    cfg = model_config_for(world, recipe.preset)
    model, opt = training_setup(cfg, recipe, device)
    model.train()
    batches = TrainingBatches(world, cfg, recipe, torch.Generator().manual_seed(1))

    def step():
        with autocast(recipe.precision, device):
            loss = batches.losses(model)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override teacher.train.KEY")
    ap.add_argument("--device", default=default_device())
    ap.add_argument("--minutes", type=float, help="fit `steps` to this training budget")
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    world = load_world(args.world)
    params = load_params(args.params)
    values = to_dict(params.teacher.train)
    for item in args.set:
        key, _, text = item.partition("=")
        values[key] = yaml.safe_load(text)
    recipe = validate_section(TeacherTrainParams, values, "--set ")
    if args.minutes:
        rate = steps_per_second(world, recipe, args.device)
        steps = max(500, int(args.minutes * 60 * rate) // 500 * 500)
        print(f"{rate:.1f} steps/s on {args.device}: {steps} steps fit {args.minutes} minutes", flush=True)
        recipe = replace(recipe, steps=steps)
    save_json(to_dict(recipe), run / "recipe.json")
    progress = train_teacher(world, recipe, run, device=args.device)
    print(f"trained {progress['step']} steps in {progress['elapsed_seconds'] / 60:.1f} min", flush=True)
    if args.eval:
        model = load_model(run / "checkpoint" / "model.safetensors").to(args.device)
        ep = replace(params.teacher.eval, steps=[2, 16])  # the stage's sampler, two step counts
        metrics = evaluate_teacher(model, world, ep, {"train": {"minutes": round(progress["elapsed_seconds"] / 60, 1)}},
                                   bootstrap=200)
        save_json(metrics, run / "eval.json")
        for T, row in metrics["t2i"].items():
            print(T, {k: round(v["score"], 3) for k, v in row.items()}, flush=True)
        print("mmu", round(metrics["mmu"]["accuracy"], 3), flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, "train_teacher.py"))
