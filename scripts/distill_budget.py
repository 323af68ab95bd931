"""Run trajectory collection and the whole curriculum outside the pipeline, within a wall-clock budget,
and score the student after every stage: how much distillation do the targets need?

    python scripts/distill_budget.py RUN_DIR [--set trajectories.KEY=VALUE --set distill.KEY=VALUE ...]
                                     [--trajectories DIR] [--collect-only] [--deadline UNIX_TIME]
                                     [--sampler-sweep] [--device cuda]

The settings are params.yaml's `trajectories` and `distill` sections with the `--set` overrides
(validated like params.yaml). Trajectories go to `--trajectories` (default RUN_DIR/trajectories;
several runs can share one store) and are collected there unless a complete store with the same
params is found. With `--deadline`, the budgets (`distill.consistency.steps`, `distill.dm.steps`)
become what fits the time left: a throw-away probe measures steps per second first, and an allowance per stage is kept for scoring. Students go
to RUN_DIR/students/<stage>, scores to RUN_DIR/summary.json (rewritten after every stage), with the
stage's metrics in the pipeline's format (`distill.evaluate_student`). `--sampler-sweep` also scores
the last student at 2 and 4 steps under several Gumbel temperatures and top-k values.
`--milestones 250,500,1000` trains each stage in pieces (resuming its checkpoint: the same run as
one uninterrupted stage) and scores the checkpoint's student after each piece; the stage's budget
becomes the last milestone. `--teacher` is also the teacher that `method: dm` stages match.
"""

import argparse
import sys
import json
import shutil
import time
from showo_turbo.pipeline.params import replace
from pathlib import Path

import torch
import yaml

from showo_turbo.training import trajectories as TJ
from showo_turbo.pipeline.errors import run_cli
from showo_turbo.training.distill import distill_stage, evaluate_student, student_minutes
from showo_turbo.evaluation.harness import t2i_sweep
from showo_turbo.pipeline.io import save_json
from showo_turbo.model.showo import load_model
from showo_turbo.pipeline.params import load_params, parse_params, to_dict
from showo_turbo.evaluation.harness import eval_prompts_subset
from showo_turbo.model.showo import default_device
from showo_turbo.worlds import load_world

SECTIONS = ("trajectories", "distill", "teacher")  # teacher: e.g. teacher.eval.precision=fp32 for scoring


def params_with(path: str, overrides: list[str]):
    """params.yaml with `section.key[.subkey]=value` overrides (trajectories, distill, teacher), validated."""
    data = to_dict(load_params(path))
    original_stages = dict(data["distill"]["stages"])
    for item in overrides:
        key, sep, text = item.partition("=")
        section, *names = key.split(".")
        if not sep or section not in SECTIONS or not names:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION in {', '.join(SECTIONS)}")
        node = data[section]
        for depth, name in enumerate(names[:-1]):  # e.g. distill.dm.aux_updates
            node = node.get(name)
            if not isinstance(node, dict):
                raise SystemExit(f"--set {item!r}: {'.'.join([section, *names[:depth + 1]])} is not a section")
        node[names[-1]] = yaml.safe_load(text)
    stages = data["distill"]["stages"]
    if not (isinstance(stages, dict) and stages):
        return parse_params(data, "params.yaml + --set")  # refused there, with the key named
    # The evaluate section (unused here) names stages of each method: validate the run's stages together
    # with the params file's own ones (a run's stage of the same name in its place, so that init_dir
    # chains such as seg4 -> seg2 -> seg1 keep their order; new names after them), then keep the run's.
    data["distill"]["stages"] = {**{k: stages.get(k, v) for k, v in original_stages.items()},
                                 **{k: v for k, v in stages.items() if k not in original_stages}}
    params = parse_params(data, "params.yaml + --set")
    # (a copy, not validated again: the evaluate section may name a stage the run leaves out)
    run_stages = {k: params.distill.stages[k] for k in stages}
    return params.model_copy(update={"distill": params.distill.model_copy(update={"stages": run_stages})})


def with_budget(dp, steps: int):
    """`dp` with the budget of every method its stages use set to `steps`."""
    return replace(dp, **{m: replace(dp.method(m), steps=steps) for m in {st.method for st in dp.stages.values()}})


def collect(teacher, world, tp, root: Path) -> None:
    """Both trajectory stores; a complete store written with the same params and teacher is reused as
    it is (several runs may read it at once), an interrupted one resumed, any other started over."""
    origin = TJ.store_params(teacher, tp)
    for kind, fn in (("t2i", TJ.collect_t2i), ("mmu", TJ.collect_mmu)):
        try:
            if TJ.ShardReader(root / kind, kind).params == origin:
                print(f"{kind} trajectories: reusing {root / kind}", flush=True)
                continue
        except (OSError, ValueError):
            pass
        t0 = time.perf_counter()
        fn(teacher, world, tp, root / kind, restart=True)
        print(f"{kind} trajectories: {time.perf_counter() - t0:.0f} s", flush=True)


def probe_rate(stage, dp, trajectories: Path, run: Path, teacher: str, n: int = 30) -> float:
    """Distillation steps per second on this device, first steps included (a throw-away stage)."""
    shutil.rmtree(run / "probe", ignore_errors=True)
    res = distill_stage(stage, replace(with_budget(dp, n), checkpoint_every=n, log_every=n),
                        trajectories, run / "probe", progress=False, teacher_dir=teacher)
    return n / res["elapsed_seconds"]


def sampler_sweep(student, world, ep, bootstrap: int) -> dict:
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    out = {}
    for temperature in (4.5, 1.0, 0.0):
        for top_k in (None, 8, 2):
            res = t2i_sweep(student, world, prompts, [2, 4], [0.0], bootstrap=bootstrap, seed=ep.seed, progress=False,
                            sample=ep.sample, temperature=temperature, top_k=top_k, precision=ep.precision)
            key = f"temperature_{temperature:g}.top_k_{top_k or 0}"
            out[key] = {k.split(".")[0]: round(v["score"], 4) for k, v in res.items()}
            print("sweep", key, out[key], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--teacher", default="data/teacher", help="folder with the teacher's model.safetensors")
    ap.add_argument("--trajectories", help="trajectory store (default RUN_DIR/trajectories)")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--deadline", type=float, help="unix time by which every stage must be trained and scored")
    ap.add_argument("--eval-seconds", type=float, default=45.0, help="time kept per stage for scoring (with --deadline)")
    ap.add_argument("--sampler-sweep", action="store_true")
    ap.add_argument("--milestones", help="comma-separated step counts at which each stage's checkpoint is scored")
    ap.add_argument("--device", default=default_device())
    args = ap.parse_args()

    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    params = params_with(args.params, args.set)
    world = load_world(args.world)
    teacher = load_model(Path(args.teacher) / "model.safetensors").to(args.device)
    traj = Path(args.trajectories or run / "trajectories")
    collect(teacher, world, params.trajectories, traj)
    if args.collect_only:
        return
    dp = params.distill
    # The pipeline's init_dir names (data/teacher, data/students/<stage>) point into this run.
    stages = {name: replace(st, init_dir=args.teacher if st.init_dir == "data/teacher"
                            else str(run / "students" / Path(st.init_dir).name)) for name, st in dp.stages.items()}
    milestones = sorted({int(m) for m in args.milestones.split(",")}) if args.milestones else []
    if milestones:
        dp = with_budget(dp, milestones[-1])
    if args.deadline:
        rate = probe_rate(next(iter(stages.values())), dp, traj, run, args.teacher)
        left = args.deadline - time.time() - len(stages) * args.eval_seconds
        steps = max(50, int(left * rate / len(stages)) // 50 * 50)
        print(f"{rate:.2f} distillation steps/s: {steps} steps per stage fit the deadline", flush=True)
        dp = with_budget(dp, steps)
    summary = {"settings": {"trajectories": to_dict(params.trajectories), "distill": to_dict(dp)},
               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu", "stages": {}}
    for name, stage in stages.items():
        out = run / "students" / name
        for piece in milestones[:-1]:  # intermediate scores from the checkpoint (the generator, or its EMA)
            progress = distill_stage(stage, dp, traj, out, progress=False, max_steps=piece, teacher_dir=args.teacher)
            ema = out / "checkpoint" / "ema.safetensors"
            student = load_model(ema if ema.is_file() else out / "checkpoint" / "model.safetensors").to(args.device)
            metrics = score(student, teacher, world, params, dp, stage, progress)
            summary["stages"].setdefault(name, {}).setdefault("milestones", {})[str(piece)] = metrics
            save_json(summary, run / "summary.json")
            report(f"{name}@{piece}", progress, metrics)
        progress = distill_stage(stage, dp, traj, out, progress=False, teacher_dir=args.teacher)
        student = load_model(out / "model.safetensors").to(args.device)
        metrics = score(student, teacher, world, params, dp, stage, progress)
        summary["stages"][name] = {**metrics, **({"milestones": summary["stages"][name]["milestones"]}
                                                 if milestones[:-1] else {})}
        save_json(summary, run / "summary.json")
        report(name, progress, metrics)
    if args.sampler_sweep:
        summary["sampler_sweep"] = sampler_sweep(student, world, params.teacher.eval, bootstrap=200)
        save_json(summary, run / "summary.json")
    budgets = ", ".join(f"{dp.method(m).steps} steps per {m} stage" for m in dict.fromkeys(st.method for st in dp.stages.values()))
    print(f"{run / 'summary.json'}: {budgets}, on {summary['device']}", flush=True)


def score(student, teacher, world, params, dp, stage, progress) -> dict:
    t0 = time.perf_counter()
    metrics = evaluate_student(student, teacher, world, dp, params.teacher.eval, params.trajectories.block_size,
                               minutes=student_minutes(progress), stage=stage, bootstrap=params.world.bootstrap)
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 1)
    metrics["losses"] = progress["losses"].get("process_0", {})
    return metrics


def report(name: str, progress: dict, metrics: dict) -> None:
    scores = {k: round(v["score"], 3) for k, v in metrics["t2i"].items()}
    print(f"{name}: {progress['step']} steps, {metrics['train']['minutes']} min, T2I {scores}, "
          f"MMU {metrics['mmu']['accuracy']:.3f} at {metrics['mmu']['forwards_per_token']:.2f} passes/token "
          f"(teacher {metrics['teacher']['forwards_per_token']:.2f}), scored in {metrics['eval_seconds']} s, "
          f"losses {json.dumps({k: round(v, 4) for k, v in metrics['losses'].items()})}", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, "distill_budget.py"))
