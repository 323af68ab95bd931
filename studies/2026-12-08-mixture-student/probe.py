"""Issue 34's kill criterion and study runs: a mixture student (methods/mixture.py) from the curriculum's
seg1 beside its one-draw control, trained for the same wall minutes, scored with the evaluate stage's
arms and sampler on its held-out prompts. Run in the folder of a finished default pipeline
(`bash scripts/repro.sh`: data/world, data/teacher, data/students/seg1, data/trajectories/mmu):

    P=studies/2026-12-08-mixture-student/probe.py
    python $P store                                   # stochastic trajectories (params/mixture.yaml's: 500 x 4)
    python $P train --name m4 --draws 4 --minutes 60  # resumes: a second call with more minutes continues
    python $P train --name m1 --draws 1 --minutes 60
    python $P score --name seg1 --name m4 --name m1 --teacher

Everything lands under runs/mixture-student/ (`--run`); `score` appends one JSON line per model to
scores.jsonl there and prints the table. Threads: torch's default (both cores), one command at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch
import yaml

from showo_turbo.evaluation.benchmark import T2IArm, arm_images
from showo_turbo.evaluation.harness import eval_prompts_subset
from showo_turbo.methods.consistency import draw_batch
from showo_turbo.methods.mixture import mixture_terms
from showo_turbo.methods.text import TrajectoryBatches
from showo_turbo.model.showo import load_model
from showo_turbo.pipeline.params import parse_params, replace
from showo_turbo.pipeline.presets import merge_overlay
from showo_turbo.training.distill import distill_stage
from showo_turbo.training.trajectories import collect_t2i
from showo_turbo.worlds import load_world

CEILING = 1_000_000  # the stage's step budget in its recipe; `--minutes` stops it (so that a resume continues)


def study_params(overlay: Path, captions: int | None):
    data = yaml.safe_load(Path("params.yaml").read_text())
    merge_overlay(data, yaml.safe_load(overlay.read_text()))
    if captions:  # a smaller world (the probe's micro-scale check)
        data["trajectories"]["captions"] = captions
    return parse_params(data, f"params.yaml + {overlay}")


def store(args, params) -> None:
    """T2I trajectories of params/mixture.yaml from the pipeline's teacher; the default's MMU store beside them."""
    out = Path(args.run) / "trajectories"
    teacher = load_model("data/teacher/model.safetensors")
    t0 = time.time()
    collect_t2i(teacher, load_world("data/world"), params.trajectories, out / "t2i")
    if not (out / "mmu").exists():
        shutil.copytree("data/trajectories/mmu", out / "mmu")
    print(f"store: {time.time() - t0:.0f} s")


def train(args, params) -> None:
    """The stage `mix` with `--draws` lambdas for `--minutes` of training (its checkpoint's elapsed
    seconds), from data/students/seg1; steps sized from the measured seconds per step."""
    dp = params.distill
    dp = replace(dp, mixture=replace(dp.method("mixture"), draws=args.draws, steps=CEILING))
    stage, out = dp.stages["mix"], Path(args.run) / args.name
    traj = Path(args.run) / "trajectories"
    progress = out / "checkpoint" / "progress.json"
    if not progress.is_file():  # time a few steps first
        distill_stage(stage, dp, traj, out, max_steps=dp.checkpoint_every, progress=False)
    done = json.loads(progress.read_text())
    rate = done["elapsed_seconds"] / done["step"]
    target = int(args.minutes * 60 / rate)
    target -= target % dp.checkpoint_every  # stop on a checkpoint, so that nothing trained is lost
    res = distill_stage(stage, dp, traj, out, max_steps=max(target, done["step"]))
    record = {"name": args.name, "draws": args.draws, "step": res["step"], "minutes": res["elapsed_seconds"] / 60,
              "seconds_per_step": res["elapsed_seconds"] / res["step"], "losses": res["losses"]}
    with open(Path(args.run) / "train.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record))


def model_path(run: Path, name: str) -> Path:
    if name == "seg1":
        return Path("data/students/seg1/model.safetensors")
    return run / name / "checkpoint" / "model.safetensors"


@torch.no_grad()
def heldout_nll(model, params, traj: Path, draws: int = 16, states: int = 256) -> dict:
    """Per masked position, on `states` trajectory states (a fixed generator, the same for every
    model): the mixture's NLL of the trajectory's final image (the product's for a model without a
    latent) and the CE of its marginal against the teacher's target (the consistency loss)."""
    stage = params.distill.stages["mix"]
    batches = TrajectoryBatches(traj, stage, params.distill, model.config)
    g = torch.Generator().manual_seed(12345)
    nll = ce = n = 0.0
    M = draws if model.config.mixture_latent else 1
    for _ in range(states // 32):
        b = draw_batch(batches, 32, g)
        latent = torch.rand(32 * M, generator=g) if M > 1 else None
        logits = model.image_logits(b["t2i_ids"].repeat_interleave(M, 0), latent=latent)
        log_probs = logits.float().log_softmax(-1).view(32, M, *logits.shape[1:])
        joint, _ = mixture_terms(log_probs, b["t2i_final"], b["t2i_masked"])
        log_pbar = torch.logsumexp(log_probs, 1) - math.log(M)
        ce += float(-(b["t2i_probs"] * log_pbar.gather(-1, b["t2i_index"])).sum(-1)[b["t2i_masked"]].sum())
        nll += float(-joint.sum())
        n += float(b["t2i_masked"].sum())
    return {"nll_final_per_position": nll / n, "marginal_ce_per_position": ce / n, "draws": M, "states": states}


def score(args, params) -> None:
    """The evaluate stage's arms: each model as a student (no CFG, evaluate's top-k and temperature)
    at 1 / 2 / 4 / 8 steps, and teacher_cfg at 16 steps with `--teacher`."""
    run, ep = Path(args.run), params.evaluate
    world = load_world("data/world")
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    scored = [p for _ in range(ep.images_per_prompt) for p in prompts]
    scorer = world.scorer()
    rows = []
    if args.teacher:
        teacher = load_model("data/teacher/model.safetensors")
        arm = T2IArm("teacher_cfg", teacher, ep.teacher_cfg_scale, {16: None}, ep.temperature)
        rows.append({"name": "teacher_cfg", "steps_16": scorer.score(arm_images(arm, world, prompts, 16, ep), scored,
                                                                      ep.bootstrap, ep.seed).to_dict()})
    for name in args.name:
        model = load_model(model_path(run, name))
        arm = T2IArm(name, model, 0.0, {t: ep.student_top_k[t] or None for t in args.steps}, ep.temperature)
        row = {"name": name, **heldout_nll(model, params, run / "trajectories")}
        for t in args.steps:
            r = scorer.score(arm_images(arm, world, prompts, t, ep), scored, ep.bootstrap, ep.seed).to_dict()
            row[f"steps_{t}"] = {k: r[k] for k in ("score", "ci_low", "ci_high")}
        rows.append(row)
    with open(run / "scores.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    for row in rows:
        cells = [f"{k[6:]}: {v['score']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for k, v in row.items()
                 if k.startswith("steps_")]
        extra = f" NLL(x0)/pos {row['nll_final_per_position']:.4f}" if "nll_final_per_position" in row else ""
        print(f"{row['name']:12s} " + " | ".join(cells) + extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("store", "train", "score"))
    ap.add_argument("--run", default="runs/mixture-student")
    ap.add_argument("--name", action="append", default=[])
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--teacher", action="store_true")
    ap.add_argument("--overlay", type=Path, default=Path(__file__).resolve().parents[2] / "params" / "mixture.yaml")
    ap.add_argument("--captions", type=int, help="trajectories.captions instead of the overlay's")
    args = ap.parse_args()
    if args.command == "train":
        args.name = args.name[0] if args.name else f"m{args.draws}"
    {"store": store, "train": train, "score": score}[args.command](args, study_params(args.overlay, args.captions))


if __name__ == "__main__":
    main()
