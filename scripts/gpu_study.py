"""Few-step students at a larger budget, in one time-boxed command for a rented GPU (issue 32).

    python scripts/gpu_study.py [--minutes 8] [--scale default|micro] [--preset params/gpu-study.yaml]
                                [--out runs/gpu-study] [--work DIR] [--replan]

It needs the repository only: the world of params.yaml (params/micro.yaml with --scale micro) with the
preset merged in is built, the teacher the params name is taken (the shipped one at default scale),
teacher trajectories are collected on the device, the preset's stages are trained in order (the
paper's curriculum, then e.g. a dm stage) and every arm is scored with the evaluate stage's harness
and samplers on its held-out prompts: teacher_cfg at evaluate's most steps, each student at the
other step counts, without guidance.

The budget: the script times one batch of each thing it will do (sampling for the scores, trajectory
collection, a few distillation steps per method), keeps what the scores will need, gives trajectories
`--trajectory-share` of the rest and the stages the remainder (`--dm-share` of it to the dm stages);
the preset's counts are ceilings. The plan is written to WORK/plan.json and reused by a second call,
which then resumes the stores and checkpoints where the first stopped (`--replan` plans anew).

Out: OUT/results.json (settings, plan, measured rates, minutes per phase, the table) and each stage's
student in bf16 (OUT/<stage>.safetensors): at most 8 files, small enough to copy back from a rented
machine. Everything else stays in WORK (default OUT.work). Imports the library only (no dvc, papermill).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from showo_turbo.evaluation.benchmark import T2IArm, arm_images, student_arms, t2i_arms, timed_generate  # noqa: E402
from showo_turbo.evaluation.harness import encode_captions, eval_prompts_subset  # noqa: E402
from showo_turbo.model.showo import default_device, load_model  # noqa: E402
from showo_turbo.pipeline.errors import run_cli  # noqa: E402
from showo_turbo.pipeline.io import load_json, save_json, write_safetensors  # noqa: E402
from showo_turbo.pipeline.params import parse_params, replace, to_dict  # noqa: E402
from showo_turbo.pipeline.presets import merge_overlay  # noqa: E402
from showo_turbo.training import trajectories as TJ  # noqa: E402
from showo_turbo.training.distill import distill_stage  # noqa: E402
from showo_turbo.training.teacher import obtain_teacher  # noqa: E402
from showo_turbo.worlds import WorldFileError, build_world, load_world  # noqa: E402

BASE = {"default": "params.yaml", "micro": "params/micro.yaml"}


class Clock:
    """Minutes per phase, and what is left of the budget."""

    def __init__(self, minutes: float):
        self.start, self.deadline, self.phases = time.time(), time.time() + 60 * minutes, {}

    def left(self) -> float:
        return self.deadline - time.time()

    def phase(self, name: str, t0: float) -> None:
        self.phases[name] = round((time.time() - t0) / 60, 2)
        print(f"[gpu_study] {name}: {self.phases[name]} min; {self.left() / 60:.1f} min of the budget left", flush=True)


def study_params(scale: str, preset: str):
    data = yaml.safe_load((ROOT / BASE[scale]).read_text())
    merge_overlay(data, yaml.safe_load((ROOT / preset).read_text()))
    return parse_params(data, f"{BASE[scale]} + {preset}")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def eval_seconds(teacher, world, ep, n_images: int, student_steps: list[int], n_students: int) -> float:
    """The scores' cost from one timed batch (the evaluate stage's `timed_generate`): CFG at the most
    steps, and no CFG at 4 steps (a student)."""
    prompts = eval_prompts_subset(world, ep.prompts_per_category)[:ep.batch_size]
    caps, lens = encode_captions(world, [p.text for p in prompts])
    T = max(ep.steps)
    guided = T2IArm("teacher_cfg", teacher, ep.teacher_cfg_scale, {1: None, T: None}, ep.temperature)
    plain = T2IArm("no_cfg", teacher, 0.0, {4: None}, ep.temperature)
    timed_generate(guided, caps, lens, 1, ep, 0)  # warm-up
    per_cfg_image = timed_generate(guided, caps, lens, T, ep, 0) / len(prompts)
    per_plain_step = timed_generate(plain, caps, lens, 4, ep, 0) / len(prompts) / 4
    return n_images * (per_cfg_image + n_students * sum(student_steps) * per_plain_step)


def plan_trajectories(teacher, world, tp, seconds: float) -> dict:
    """Captions and MMU questions that fit `seconds`, from one timed batch of each (the preset's as ceilings)."""
    m = world.mmu_train()
    captions = min(tp.captions, len(set(world.t2i_train()["prompt_id"].tolist())))  # the world's as ceilings too
    questions = min(tp.mmu_questions, len(m["question"]))
    caps, lens = TJ.training_captions(world, min(tp.batch_size, captions), tp.seed)
    t2i = timed(lambda: TJ.collect_t2i_batch(teacher, caps, lens, tp.steps, tp.cfg_scale, tp.decoding == "deterministic",
                                             tp.temperature, tp.top_k, torch.Generator().manual_seed(0))) / len(caps)
    idx = torch.arange(min(tp.batch_size, questions))
    prompt = TJ.mmu_training_prompts(world, teacher.config, idx, 4 + teacher.config.num_image_tokens + m["question"].shape[1])
    mmu = timed(lambda: TJ.collect_mmu_batch(teacher, prompt, world.answer_tokens + 1, tp.block_size, tp.init,
                                             torch.Generator().manual_seed(0))) / len(idx) if questions else 0.0
    fit = min(1.0, seconds / (captions * tp.samples_per_caption * t2i + questions * mmu))
    return {"captions": max(1, int(captions * fit)), "mmu_questions": max(1, int(questions * fit)),
            "seconds_per_trajectory": t2i, "seconds_per_question": mmu}


def plan_steps(dp, traj: Path, work: Path, seconds: float, dm_share: float) -> dict:
    """Steps per stage that fit `seconds`, from a few timed steps of each method (throw-away stages)."""
    rates, overhead = {}, {}
    for method in dict.fromkeys(st.method for st in dp.stages.values()):
        stage = next(st for st in dp.stages.values() if st.method == method)
        n = 3
        probe_dp = replace(dp, checkpoint_every=n, log_every=n, **{method: replace(dp.method(method), steps=n)})
        shutil.rmtree(work / "probe", ignore_errors=True)
        t0 = time.time()
        res = distill_stage(replace(stage, init_dir=str(work / "teacher")), probe_dp, traj, work / "probe",
                            progress=False, teacher_dir=work / "teacher")
        rates[method] = res["elapsed_seconds"] / n
        overhead[method] = time.time() - t0 - res["elapsed_seconds"]  # loading, set-up, the final save
    shutil.rmtree(work / "probe", ignore_errors=True)
    count = {m: sum(st.method == m for st in dp.stages.values()) for m in rates}
    seconds -= sum(count[m] * overhead[m] for m in rates)
    share = {m: (dm_share if m == "dm" else 1 - dm_share) if len(rates) > 1 else 1.0 for m in rates}
    steps = {m: max(1, min(dp.method(m).steps, int(seconds * share[m] / count[m] / rates[m]))) for m in rates}
    return {"steps": steps, "seconds_per_step": rates, "seconds_per_stage_set_up": overhead}


def score_arms(params, world, work: Path, teacher) -> dict:
    """{arm: {steps_<T>: scorer row}}: teacher_cfg at evaluate's most steps, the students at the others."""
    ep = params.evaluate
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    scored = [p for _ in range(ep.images_per_prompt) for p in prompts]
    device = teacher.device
    student = load_model(work / "students" / ep.student / "model.safetensors").to(device)
    arms = student_arms(params, lambda s: load_model(work / "students" / s / "model.safetensors").to(device))
    arms = [a for a in t2i_arms(teacher, student, ep, arms) if a.name != "teacher_nocfg"]
    T, scorer, out = max(ep.steps), world.scorer(), {}
    for arm in arms:
        for t in ([T] if arm.name == "teacher_cfg" else [s for s in ep.steps if s != T]):
            images = arm_images(arm, world, prompts, t, ep)
            row = scorer.score(images, scored, ep.bootstrap, ep.seed).to_dict() if scorer is not None else {}
            out.setdefault(arm.name, {})[f"steps_{t}"] = {k: row[k] for k in ("score", "ci_low", "ci_high") if k in row}
    ref = out["teacher_cfg"][f"steps_{T}"].get("score")
    for rows in out.values():
        for row in rows.values():
            if ref and "score" in row:
                row["ratio_to_teacher_cfg"] = row["score"] / ref
    return out


def table(scores: dict) -> str:
    steps = sorted({int(k.split("_")[1]) for rows in scores.values() for k in rows})
    lines = ["arm".ljust(16) + "".join(f"{t} steps".rjust(28) for t in steps)]
    for arm, rows in scores.items():
        cells = []
        for t in steps:
            r = rows.get(f"steps_{t}")
            cells.append("-" if r is None or "score" not in r else
                         f"{r['score']:.3f} [{r['ci_low']:.3f}-{r['ci_high']:.3f}] {r.get('ratio_to_teacher_cfg', 0):.2f}x")
        lines.append(arm.ljust(16) + "".join(c.rjust(28) for c in cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the whole run")
    ap.add_argument("--scale", choices=tuple(BASE), default="default")
    ap.add_argument("--preset", default="params/gpu-study.yaml")
    ap.add_argument("--out", default="runs/gpu-study")
    ap.add_argument("--work", help="stores, checkpoints, the world (default: OUT.work)")
    ap.add_argument("--trajectory-share", type=float, default=0.25)
    ap.add_argument("--dm-share", type=float, default=0.5, help="of the training time, for the dm stages")
    ap.add_argument("--replan", action="store_true")
    args = ap.parse_args()
    clock = Clock(args.minutes)
    os.chdir(ROOT)  # the params' paths (teacher.shipped_dir) are the repository's
    out, work = Path(args.out), Path(args.work or f"{args.out}.work")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    params = study_params(args.scale, args.preset)
    device = default_device()
    print(f"[gpu_study] {BASE[args.scale]} + {args.preset} on {device}, {args.minutes} min", flush=True)

    t0 = time.time()  # 1. The world and the teacher.
    try:
        world = load_world(work / "world")
        if to_dict(world.params) != to_dict(params.world):
            raise WorldFileError("another world")
    except WorldFileError:
        shutil.rmtree(work / "world", ignore_errors=True)
        world = build_world(params.world, work / "world")
    if (work / "teacher" / "model.safetensors").is_file():
        teacher = load_model(work / "teacher" / "model.safetensors").to(device)
    else:
        teacher, _ = obtain_teacher(params.teacher, world, work / "teacher", work / "teacher_checkpoint")
    teacher.eval()
    clock.phase("world and teacher", t0)

    # Stage paths inside WORK.
    stages = {n: replace(st, init_dir=str(work / "teacher") if st.init_dir == "data/teacher" else
                         str(work / "students" / Path(st.init_dir).name)) for n, st in params.distill.stages.items()}
    ep = params.evaluate
    student_steps = [s for s in ep.steps if s != max(ep.steps)]
    n_images = len(eval_prompts_subset(world, ep.prompts_per_category)) * ep.images_per_prompt

    t0 = time.time()  # 2. The plan (reused by a second call).
    plan_path = work / "plan.json"
    plan = load_json(plan_path) if plan_path.is_file() and not args.replan else None
    if plan is None:
        reserve = 1.25 * eval_seconds(teacher, world, ep, n_images, student_steps, 1 + len(params.arms())) + 30
        plan = {"eval_seconds_estimate": round(reserve, 1),
                "trajectories": plan_trajectories(teacher, world, params.trajectories,
                                                  args.trajectory_share * max(clock.left() - reserve, 0))}
        save_json(plan, plan_path)
    tp = replace(params.trajectories, captions=plan["trajectories"]["captions"],
                 mmu_questions=plan["trajectories"]["mmu_questions"])
    clock.phase("planning trajectories", t0)

    t0 = time.time()  # 3. Trajectories.
    TJ.collect_t2i(teacher, world, tp, work / "trajectories" / "t2i", restart=True)
    TJ.collect_mmu(teacher, world, tp, work / "trajectories" / "mmu", restart=True)
    clock.phase(f"trajectories ({tp.captions * tp.samples_per_caption} T2I, {tp.mmu_questions} MMU)", t0)

    t0 = time.time()  # 4. Distillation, every stage of the preset in order.
    dp = params.distill  # its stages keep the pipeline's paths (validated so); `stages` point into WORK
    if "training" not in plan:
        plan["training"] = plan_steps(dp, work / "trajectories", work,
                                      max(clock.left() - plan["eval_seconds_estimate"], 0), args.dm_share)
        save_json(plan, plan_path)
    dp = replace(dp, **{m: replace(dp.method(m), steps=s) for m, s in plan["training"]["steps"].items()})
    for name, stage in stages.items():
        distill_stage(stage, dp, work / "trajectories", work / "students" / name, teacher_dir=work / "teacher")
    clock.phase("distillation (" + ", ".join(f"{s} {m} steps" for m, s in plan["training"]["steps"].items()) + ")", t0)

    t0 = time.time()  # 5. Scores.
    scores = score_arms(params, world, work, teacher)
    clock.phase("scores", t0)
    for name in stages:
        state = load_model(work / "students" / name / "model.safetensors").state_dict()
        write_safetensors({k: v.to(torch.bfloat16) for k, v in state.items()}, out / f"{name}.safetensors",
                          {"format": "showo-turbo/gpu-study-student/1", "config": json.dumps(load_model(
                              work / "students" / name / "model.safetensors").config.to_dict())})
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    minutes = round((time.time() - clock.start) / 60, 2)
    save_json({"device": device_name, "budget_minutes": args.minutes, "minutes": minutes, "phases": clock.phases,
               "scale": args.scale, "preset": args.preset, "plan": plan, "scores": scores,
               "settings": {"trajectories": to_dict(tp), "distill": to_dict(dp), "evaluate": to_dict(ep)}},
              out / "results.json")
    print(f"\n{table(scores)}\n\nscore [95% interval] and ratio to teacher_cfg@{max(ep.steps)}; {device_name}, "
          f"{minutes} of {args.minutes} min; {out / 'results.json'}", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, "gpu_study.py"))
