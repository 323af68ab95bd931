"""The distillation stage loop (`dvc repro distill@<name>`): one stage of any method plug-in
(showo_turbo/methods: `consistency`, the paper's curriculum; `dm`, from the preset params/dm.yaml),
with checkpoints, resume, DVCLive and the student's scores. It knows no method: it asks the stage's
method for its training state and its sampler (methods/__init__.py says what a method offers).

The loop runs on `accelerate` (one process, or several through `accelerate launch`). Every batch is
drawn from a generator seeded by (seed, process, step), so a resumed stage draws exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch

from ..methods import method_module
from ..model.showo import ShowoModel, resolve_precision, save_model
from ..pipeline.errors import run_cli
from ..pipeline.io import LossLog, atomic_dir, exclusive_folder, load_json, save_json
from ..pipeline.params import DistillParams, StageEntry, load_params, to_dict
from ..pipeline.shards import sha256_of
from .loop import resume_point, start_over, train_steps

# --------------------------------------------------------------------------------------------
# A stage's recipe and budget.


def stage_steps(stage: StageEntry, dp: DistillParams) -> int:
    """The stage's budget: its method section's `steps`."""
    return dp.method(stage.method).steps


def batch_generator(seed: int, process: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + process) * 1_000_003 + step)


def _sha(path: Path) -> str | None:
    return sha256_of(path) if path.is_file() else None


def stage_recipe(stage: StageEntry, dp: DistillParams, trajectories_dir: str | Path, teacher_dir: str | Path) -> dict:
    """What a checkpoint must match to be resumed: the stage entry (its arm's sampler aside), the
    shared distill params, its method's section (not another method's) and its inputs (the teacher
    too where the method queries it while training)."""
    traj = Path(trajectories_dir)
    shas = {k: load_json(traj / k / "manifest.json")["shards"][-1]["sha256"] if (traj / k / "manifest.json").is_file() else None
            for k in ("t2i", "mmu")}
    shared = {k: v for k, v in to_dict(dp).items() if k in DistillParams.model_fields and k != "stages"}
    inputs = {"trajectories": shas, "init_sha256": _sha(Path(stage.init_dir) / "model.safetensors")}
    if method_module(stage.method).USES_TEACHER:
        inputs["teacher_sha256"] = _sha(Path(teacher_dir) / "model.safetensors")
    entry = {k: v for k, v in to_dict(stage).items() if k != "arm"}
    return {"stage": entry, "distill": shared, stage.method: to_dict(dp.method(stage.method)), "inputs": inputs}


def distill_stage(stage: StageEntry, dp: DistillParams, trajectories_dir: str | Path, out_dir: str | Path,
                  live=None, max_steps: int | None = None, cpu: bool | None = None, progress: bool = True,
                  teacher_dir: str | Path = "data/teacher", restart: bool | None = None) -> dict:
    """Train one stage's student (`stage.method`) from `stage.init_dir` into `out_dir`
    (model.safetensors + history.jsonl; checkpoint/ while running). A checkpoint with the same
    recipe is resumed (also under a larger step budget: the stage continues); one with another is
    refused (`training.loop.resume_point`) unless `restart`. `max_steps` stops early (to simulate
    an interruption). Returns the final progress record with the last logged losses of every process."""
    from accelerate import Accelerator

    out, method = Path(out_dir), method_module(stage.method)
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    acc = Accelerator(cpu=cpu, mixed_precision="bf16" if resolve_precision(dp.precision, device) == "bf16" else "no")
    with exclusive_folder(out) if acc.is_main_process else contextlib.nullcontext():  # one run per folder
        return _train_stage(acc, method, stage, dp, trajectories_dir, out, live, max_steps, progress, teacher_dir, restart)


def _train_stage(acc, method, stage: StageEntry, dp: DistillParams, trajectories_dir: str | Path, out: Path, live,
                 max_steps: int | None, progress: bool, teacher_dir: str | Path, restart: bool | None) -> dict:
    recipe = stage_recipe(stage, dp, trajectories_dir, teacher_dir)
    total = stage_steps(stage, dp)
    ckpt = out / "checkpoint"
    prog = resume_point(ckpt, recipe, (f"{stage.method}.steps", total), restart)
    step, elapsed = (prog["step"], prog["elapsed_seconds"]) if prog else (0, 0.0)
    acc.wait_for_everyone()
    if acc.is_main_process:
        if prog is None:
            start_over(ckpt, out / "history.jsonl")
        out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    resumed_from = step
    training = method.Training(acc, stage, dp, trajectories_dir, teacher_dir, ckpt if prog else None)
    stop = total if max_steps is None else min(total, max_steps)
    t0, log, last = time.time() - elapsed, LossLog(out / "history.jsonl", live, "distill"), {}
    if step and acc.is_main_process:
        log.resume(step)

    def flush(step: int) -> dict:
        nonlocal last
        means = log.flush(step, time.time() - t0, write=acc.is_main_process)
        gathered = acc.gather(torch.tensor([means[k] for k in sorted(means)], device=acc.device).view(1, -1)).cpu()
        last = {f"process_{p}": dict(zip(sorted(means), row.tolist())) for p, row in enumerate(gathered)}
        return means

    def checkpoint(step: int) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            with atomic_dir(ckpt) as tmp:
                training.save(tmp)
                save_json({"step": step, "elapsed_seconds": time.time() - t0, "recipe": recipe}, tmp / "progress.json")

    step = train_steps(step, stop, total, lambda s: training.step(s, batch_generator(dp.seed, acc.process_index, s)),
                       log, flush, checkpoint, dp.log_every, dp.checkpoint_every,
                       f"distill {stage.method} ({stage.segments} segments)", progress and acc.is_main_process)
    acc.wait_for_everyone()
    prog = load_json(ckpt / "progress.json")
    student = training.student()
    if acc.is_main_process and step >= total:
        save_model(student, out / "model.safetensors")
    # Every process's weights, summed: equal across processes when DDP kept them in sync.
    checksum = torch.stack([p.detach().double().sum() for p in student.parameters()]).sum().view(1)
    sums = acc.gather(checksum.to(acc.device)).cpu().tolist()
    return {**prog, "resumed_from": resumed_from, "losses": last, "processes": acc.num_processes, "weight_checksums": sums}


def stage_paths(params, stage_name: str = "", out_dir: str = "", metrics_path: str = "", live_dir: str = "") -> tuple[str, str, str, str]:
    """The stage's name (default: the curriculum's first) and its output paths (defaults: the pipeline's)."""
    stages = params.distill.stages
    name = stage_name or next(iter(stages))
    if name not in stages:
        raise ValueError(f"stage {name!r} is not in distill.stages ({', '.join(stages)})")
    return (name, out_dir or f"data/students/{name}", metrics_path or f"metrics/distill/{name}.json",
            live_dir or f"dvclive/distill/{name}")


def student_minutes(progress: dict) -> float:
    return round(progress["elapsed_seconds"] / 60, 2)


def student_sampler(stage: StageEntry, dp: DistillParams) -> tuple[list[int], dict]:
    """The step counts a stage's student is scored at and its sampler's start (its method's)."""
    method = method_module(stage.method)
    return method.scored_steps(dp.eval_steps), method.sampler_start(dp.method(stage.method))


def evaluate_student(student: ShowoModel, teacher: ShowoModel, world, dp: DistillParams, ep, block_size: int,
                     minutes: float, stage: StageEntry, bootstrap: int = 1000) -> dict:
    """metrics/distill/<stage>.json: the student's ShapesEval at its method's step counts without CFG
    (the teacher's eval sampler otherwise, from its method's start), its Jacobi MMU accuracy and
    forward passes per token, and the teacher's Jacobi passes per token on the same questions."""
    from ..evaluation.harness import eval_prompts_subset, mmu_eval, t2i_sweep
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    steps, start = student_sampler(stage, dp)
    sweep = t2i_sweep(student, world, prompts, steps, [0.0], bootstrap=bootstrap, seed=ep.seed, sample=ep.sample,
                      temperature=ep.temperature, precision=ep.precision, images_per_prompt=ep.images_per_prompt,
                      batch_size=ep.batch_size, **start)
    s = mmu_eval(student, world, "jacobi", block_size=block_size, precision=ep.precision)
    t = mmu_eval(teacher, world, "jacobi", block_size=block_size, precision=ep.precision)
    keep = ("accuracy", "forwards_per_token", "tokens_per_second")
    return {"t2i": {f"steps_{T}": sweep[f"steps_{T}.cfg_0"] for T in steps if sweep},  # {}: the world has no scorer
            "mmu": {k: s[k] for k in keep}, "teacher": {k: t[k] for k in keep}, "train": {"minutes": minutes}}


# --------------------------------------------------------------------------------------------
# Command line, for several processes: `accelerate launch --multi_gpu --num_processes 2 -m
# showo_turbo.training.distill --stage seg4 --out DIR` (on a machine without a GPU, accelerate's torchrun
# launcher still starts the processes and they train on the CPU over gloo).


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Distill one curriculum stage (for multi-process runs via accelerate launch).")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", required=True, help="a name under distill.stages")
    ap.add_argument("--trajectories", default="data/trajectories")
    ap.add_argument("--teacher", default="data/teacher", help="the teacher (for a method that queries it)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--report", help="write the final progress record (losses per process) here as JSON")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    if args.stage not in params.distill.stages:
        raise SystemExit(f"--stage {args.stage!r}: not in distill.stages ({', '.join(params.distill.stages)})")
    res = distill_stage(params.distill.stages[args.stage], params.distill, args.trajectories, args.out,
                        max_steps=args.max_steps, progress=False, teacher_dir=args.teacher)
    if args.report and int(os.environ.get("RANK", "0")) == 0:
        save_json(res, args.report)
    if not all(math.isfinite(v) for p in res["losses"].values() for v in p.values()):
        raise SystemExit("non-finite loss")


if __name__ == "__main__":
    sys.exit(run_cli(main, "showo_turbo.training.distill"))
