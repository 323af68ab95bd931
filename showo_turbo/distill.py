"""The distillation stage loop (`dvc repro distill@<name>`): one curriculum stage of any method
(`consistency`: Show-o Turbo's segmented consistency distillation, consistency.py; `dm`: noise-input
distribution matching, distribution_matching.py), with checkpoints, resume, DVCLive and the
student's scores.

The loop runs on `accelerate` (one process, or several through `accelerate launch`). Every batch is
drawn from a generator seeded by (seed, process, step), so a resumed stage draws exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .consistency import ConsistencyTraining, batch_generator
from .distribution_matching import DMTraining
from .errors import run_cli
from .io import LossLog, atomic_dir, load_json, save_json
from .model import ShowoModel, resolve_precision, save_model
from .params import DISTILL_METHODS, CurriculumStage, DistillParams, load_params
from .shards import sha256_of

POOL_FILE = "teacher_pool.safetensors"  # a dm stage's teacher samples (image_loss matched), in its out folder

# --------------------------------------------------------------------------------------------
# A stage's identity and budget.


def stage_steps(stage: CurriculumStage, dp: DistillParams) -> int:
    """The stage's budget: distill.consistency.steps or distill.dm.steps."""
    return dp.method(stage.method).steps


def with_budget(dp: DistillParams, steps: int) -> DistillParams:
    """`dp` with both methods' budgets set to `steps`."""
    return replace(dp, consistency=replace(dp.consistency, steps=steps), dm=replace(dp.dm, steps=steps))


def stage_signature(stage: CurriculumStage, dp: DistillParams, trajectories_dir: str | Path, init_dir: str | Path,
                    teacher_dir: str | Path | None = None) -> dict:
    """What a checkpoint must match to be resumed: the stage, the shared distill params and its
    method's section (not the other method's), and its inputs (the teacher too for a dm stage, whose
    targets it computes on the fly)."""
    traj = Path(trajectories_dir)
    shas = {k: load_json(traj / k / "manifest.json")["shards"][-1]["sha256"] if (traj / k / "manifest.json").is_file() else None
            for k in ("t2i", "mmu")}
    init = Path(init_dir) / "model.safetensors"
    others = {"stages", *DISTILL_METHODS} - {stage.method}
    sig = {"stage": asdict(stage), "distill": {k: v for k, v in asdict(dp).items() if k not in others},
           "trajectories": shas, "init_sha256": sha256_of(init) if init.is_file() else None}
    if stage.method == "dm" and teacher_dir is not None:
        teacher = Path(teacher_dir) / "model.safetensors"
        sig["teacher_sha256"] = sha256_of(teacher) if teacher.is_file() else None
    return json.loads(json.dumps(sig))  # as it reads back from progress.json (lists, not tuples)


def without_budget(signature: dict) -> dict:
    """The signature less the step budget (distill.consistency.steps or distill.dm.steps). The lr is
    constant after warmup, so a stage trained to N steps is the first N steps of a longer run: raising
    the budget resumes the finished stage instead of starting over."""
    distill = dict(signature.get("distill", {}))
    for m in DISTILL_METHODS:
        if isinstance(distill.get(m), dict):
            distill[m] = {k: v for k, v in distill[m].items() if k != "steps"}
    return {**signature, "distill": distill}


def stage_training(acc, stage: CurriculumStage, dp: DistillParams, trajectories_dir, teacher_dir, resume: Path | None,
                   out_dir: Path | None = None):
    """The training state of `stage.method`, from its init_dir or from a checkpoint folder (a dm
    stage's teacher-sample pool, image_loss matched, is kept in `out_dir`)."""
    if stage.method == "dm":
        pool = Path(out_dir) / POOL_FILE if out_dir is not None else None
        return DMTraining(acc, stage, dp, trajectories_dir, stage.init_dir, teacher_dir, resume, pool)
    return ConsistencyTraining(acc, stage, dp, trajectories_dir, stage.init_dir, resume)


def distill_stage(stage: CurriculumStage, dp: DistillParams, trajectories_dir: str | Path, out_dir: str | Path,
                  live=None, max_steps: int | None = None, cpu: bool | None = None, progress: bool = True,
                  teacher_dir: str | Path = "data/teacher") -> dict:
    """Train one stage's student (`stage.method`) from `stage.init_dir` into `out_dir`
    (model.safetensors + history.jsonl; checkpoint/ while running). Resumes a checkpoint with the
    same signature (also under a larger step budget: the stage continues) and starts over otherwise.
    `max_steps` stops early (to simulate an interruption). `teacher_dir`: the teacher a dm stage
    matches. Returns the final progress record with the last logged losses of every process."""
    from accelerate import Accelerator

    out = Path(out_dir)
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    acc = Accelerator(cpu=cpu, mixed_precision="bf16" if resolve_precision(dp.precision, device) == "bf16" else "no")
    signature = stage_signature(stage, dp, trajectories_dir, stage.init_dir, teacher_dir)
    ckpt, step, elapsed, resume = out / "checkpoint", 0, 0.0, None
    if (ckpt / "progress.json").is_file():
        prog = load_json(ckpt / "progress.json")
        if (without_budget(prog.get("signature", {})) == without_budget(signature)
                and prog.get("step", 0) <= stage_steps(stage, dp)):  # the same run, no further than the budget
            resume, step, elapsed = ckpt, prog["step"], prog["elapsed_seconds"]
        elif acc.is_main_process:  # another stage, params or inputs: start over
            shutil.rmtree(ckpt)
            (out / "history.jsonl").unlink(missing_ok=True)
    acc.wait_for_everyone()
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if step == 0:
            (out / "history.jsonl").unlink(missing_ok=True)
    resumed_from = step
    training = stage_training(acc, stage, dp, trajectories_dir, teacher_dir, resume, out)
    total = stage_steps(stage, dp)
    stop = total if max_steps is None else min(total, max_steps)
    what = "distribution matching" if stage.method == "dm" else f"{stage.segments} segments"
    bar = tqdm(total=total, initial=step, desc=f"distill ({what})", disable=not (progress and acc.is_main_process))
    t0, log, last = time.time() - elapsed, LossLog(out / "history.jsonl", live, "distill"), {}
    if step and acc.is_main_process:
        log.resume(step)
    while step < stop:
        losses = training.step(step, batch_generator(dp.seed, acc.process_index, step))
        step += 1
        log.add(losses)
        bar.update()
        if step % dp.log_every == 0 or step == stop:
            means = log.flush(step, time.time() - t0, write=acc.is_main_process)
            gathered = acc.gather(torch.tensor([means[k] for k in sorted(means)], device=acc.device).view(1, -1)).cpu()
            last = {f"process_{p}": dict(zip(sorted(means), row.tolist())) for p, row in enumerate(gathered)}
            bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()})
        if step % dp.checkpoint_every == 0 or step == stop:
            acc.wait_for_everyone()
            if acc.is_main_process:
                with atomic_dir(ckpt) as tmp:
                    training.save(tmp)
                    save_json({"step": step, "elapsed_seconds": time.time() - t0, "signature": signature},
                              tmp / "progress.json")
    bar.close()
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


def student_sampler(stage: CurriculumStage | None, dp: DistillParams) -> tuple[list[int], dict]:
    """The step counts a stage's student is scored at and its sampler's start: a dm student from its
    noisy initial state, at 1 step too; a consistency student from all-[MASK]."""
    if stage is not None and stage.method == "dm":
        return sorted({1, *dp.eval_steps}), {"init_mask_ratio": dp.dm.mask_ratio, "embed_noise": dp.dm.embed_noise}
    return list(dp.eval_steps), {}


def evaluate_student(student: ShowoModel, teacher: ShowoModel, world, dp: DistillParams, ep, block_size: int,
                     minutes: float, bootstrap: int = 1000, stage: CurriculumStage | None = None) -> dict:
    """metrics/distill/<stage>.json: the student's ShapesEval at `dp.eval_steps` without CFG (the
    teacher's eval sampler otherwise; `student_sampler` for a dm stage), its Jacobi MMU accuracy and
    forward passes per token, and the teacher's Jacobi passes per token on the same questions."""
    from .evaluate import mmu_eval, t2i_sweep
    from .teacher import eval_prompts_subset
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
# showo_turbo.distill --stage seg4 --out DIR` (on a machine without a GPU, accelerate's torchrun
# launcher still starts the processes and they train on the CPU over gloo).


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Distill one curriculum stage (for multi-process runs via accelerate launch).")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", required=True, help="a name under distill.stages")
    ap.add_argument("--trajectories", default="data/trajectories")
    ap.add_argument("--teacher", default="data/teacher", help="the teacher a method: dm stage matches")
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
    sys.exit(run_cli(main, "showo_turbo.distill"))
