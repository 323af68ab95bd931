"""Stage `evaluate`: the paper's Tables 1-2 on the world, every arm measured in one run.

T2I arms (held-out prompts, several seeded images per prompt, the world's scorer with a bootstrap interval,
seconds per image from timed batches):

    teacher_cfg     the teacher with classifier-free guidance (one doubled batch per step)
    teacher_nocfg   the teacher without guidance
    turbo           the final curriculum student (evaluate.student) without guidance
    turbo_<stage>   every other distill stage with an `arm:` entry (e.g. `dm` from params/dm.yaml),
                    from its method's start (`sampler_start`) with the arm's sampler settings

MMU arms (the world's held-out questions): teacher_ar (AR with a KV cache), teacher_jacobi,
turbo_jacobi and turbo_<stage>_jacobi: answer accuracy, forward passes per token and tokens per second.

Speed two ways: batched (seconds per image from timed batches, tokens per second over the batched
evaluation) and as the paper reports it, at batch 1 (`seconds_per_image_batch1`: the median over
`timing_batch` prompts drawn one at a time after a warm-up; `tokens_per_second_batch1`: that many
questions answered one at a time). Jacobi's passes per token count a block as done when its tokens
up to <|eot|> are fixed (`stop="eot"`, exact: the same answer as AR), and under Show-o Turbo's
accounting, when the whole block (the junk after <|eot|> too) has settled (`forwards_per_token_block`).

    arms = student_arms(params, lambda stage: load_model(f"data/students/{stage}/model.safetensors"))
    metrics = evaluate_arms(teacher, student, world, params.evaluate, arms)
    t2i_table(metrics); mmu_table(metrics); write_plot_files(metrics, "plots/evaluate")
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .harness import CodeSets, decode_codes, eval_prompts_subset, encode_captions, generate_codes, generate_images, mmu_eval
from ..pipeline.io import atomic_path
from ..model.showo import ShowoModel, autocast
from ..pipeline.params import EvaluateParams, Params
from ..model.sampling import t2i_generate
from ..worlds import EvalPrompt, World

# Keys of a T2I metrics row that are not one of the scorer's categories.
NOT_CATEGORIES = ("score", "ci_low", "ci_high", "n_images", "images", "seconds_per_image", "seconds_per_image_batch1",
                  "reused_samples")
MMU_KEYS = ("accuracy", "forwards_per_token", "forwards_per_token_block", "tokens_per_second",
            "tokens_per_second_batch1")


@dataclass(frozen=True)
class T2IArm:
    """One T2I configuration: a model, its guidance scale, its top-k per step count (None = off), its
    Gumbel re-masking temperature and its start (`t2i_generate`'s init_mask_ratio; empty =
    all-[MASK]). `model_sha256`: the hash of the model's weights file, for taking its images from a
    sample store (empty: always sampled)."""

    name: str
    model: ShowoModel
    cfg_scale: float
    top_k: dict[int, int | None]
    temperature: float
    start: dict = field(default_factory=dict)
    model_sha256: str = ""

    def sampler(self, steps: int) -> dict:
        return {"top_k": self.top_k[steps], "temperature": self.temperature, **self.start}


def student_arms(params: Params, load: Callable[[str], ShowoModel]) -> list[T2IArm]:
    """The arms `turbo_<stage>` of the stages of `params` with an `arm:` entry: each stage's student
    `load(stage)`, without CFG, with its arm's sampler settings and its method's start."""
    from ..methods import method_module
    return [T2IArm(f"turbo_{name}", load(name), 0.0, {t: k or None for t, k in st.arm.top_k.items()}, st.arm.temperature,
                   method_module(st.method).sampler_start(params.distill.method(st.method)))
            for name, st in params.arms().items()]


def t2i_arms(teacher: ShowoModel, student: ShowoModel, ep: EvaluateParams, arms: Sequence[T2IArm] = (),
             teacher_sha256: str = "") -> list[T2IArm]:
    """The paper's T2I arms, then `arms` (`student_arms`); `teacher_sha256` (the teacher's weights
    file hash) lets the teacher arms take the teacher stage's stored samples."""
    no_top_k = {t: None for t in ep.steps}
    return [T2IArm("teacher_cfg", teacher, ep.teacher_cfg_scale, no_top_k, ep.temperature, model_sha256=teacher_sha256),
            T2IArm("teacher_nocfg", teacher, 0.0, no_top_k, ep.temperature, model_sha256=teacher_sha256),
            T2IArm("turbo", student, 0.0, {t: (ep.student_top_k[t] or None) for t in ep.steps}, ep.temperature), *arms]


def arm_codes(arm: T2IArm, world: World, prompts: Sequence[EvalPrompt], steps: int, ep: EvaluateParams,
              store=None) -> CodeSets:
    """`ep.images_per_prompt` image codes per prompt, image i of every prompt drawn with seed
    `ep.seed + i` (the same seeds for every arm); sets found in `store` under the arm's model hash
    are reused (`CodeSets.reused` counts them)."""
    return generate_codes(arm.model, world, prompts, steps, arm.cfg_scale, ep.images_per_prompt, ep.seed, ep.batch_size,
                          ep.precision, store=store, model_sha256=arm.model_sha256, sample=ep.sample, **arm.sampler(steps))


def arm_images(arm: T2IArm, world: World, prompts: Sequence[EvalPrompt], steps: int, ep: EvaluateParams,
               store=None) -> np.ndarray:
    """`arm_codes`, decoded to pixels."""
    return decode_codes(world, arm_codes(arm, world, prompts, steps, ep, store).codes)


def timed_generate(arm: T2IArm, caps: torch.Tensor, lens: torch.Tensor, steps: int, ep: EvaluateParams,
                   seed: int) -> float:
    """Wall seconds of one `t2i_generate` call of `arm` on these captions (tokens only: decoding to
    pixels costs the same for every arm)."""
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with autocast(ep.precision, arm.model.device):
        t2i_generate(arm.model, caps, lens, steps=steps, cfg_scale=arm.cfg_scale, sample=ep.sample, generator=g,
                     **arm.sampler(steps))
    if arm.model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def seconds_per_image(arms: Sequence[T2IArm], world: World, prompts: Sequence[EvalPrompt], steps: int,
                      ep: EvaluateParams) -> dict[str, float]:
    """Sampler wall time per image of every arm at `steps`: one untimed warm-up batch per arm, then
    `ep.timing_repeats` rounds that time one batch of `ep.timing_batch` prompts per arm in turn (so a
    slow moment of the machine hits every arm alike); the median per arm over the batch size."""
    caps, lens = encode_captions(world, [p.text for p in prompts[:ep.timing_batch]])
    for arm in arms:  # warm-up: allocator, caches, first-call overheads
        timed_generate(arm, caps, lens, steps, ep, ep.seed)
    times: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for _ in range(ep.timing_repeats):
        for arm in arms:
            times[arm.name].append(timed_generate(arm, caps, lens, steps, ep, ep.seed))
    return {name: statistics.median(ts) / len(caps) for name, ts in times.items()}


def seconds_per_image_batch1(arms: Sequence[T2IArm], world: World, prompts: Sequence[EvalPrompt], steps: int,
                             ep: EvaluateParams) -> dict[str, float]:
    """Latency as the paper reports it: one image at a time. Each of the first `ep.timing_batch`
    prompts is drawn by every arm in turn (after one untimed warm-up image per arm); the median per arm."""
    caps, lens = encode_captions(world, [p.text for p in prompts[:ep.timing_batch]])
    for arm in arms:
        timed_generate(arm, caps[:1], lens[:1], steps, ep, ep.seed)
    times: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for i in range(len(caps)):
        for arm in arms:
            times[arm.name].append(timed_generate(arm, caps[i:i + 1], lens[i:i + 1], steps, ep, ep.seed + i))
    return {name: statistics.median(ts) for name, ts in times.items()}


def evaluate_t2i(arms: Sequence[T2IArm], world: World, ep: EvaluateParams, progress: bool = True,
                 export_dir: str | Path | None = None, store=None) -> dict:
    """{arm: {steps_<T>: {score, ci_low, ci_high, <category>..., seconds_per_image, seconds_per_image_batch1, images,
    reused_samples}}}. A world without a scorer gets no score keys (nothing is guessed); with
    `export_dir` and a world that exports (`world.export_images`, e.g. GenEval's layout), each arm's
    images at each step count go to `<export_dir>/<arm>/steps_<T>/`. `store`: a SampleStore whose
    sets (the teacher stage's) are reused where an arm's key matches (`reused_samples` says so);
    the timing is measured anew either way."""
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    scored = [p for _ in range(ep.images_per_prompt) for p in prompts]  # arm_images' order
    scorer = world.scorer()
    export = getattr(world, "export_images", None) if export_dir is not None else None
    out: dict = {}
    grid = [(arm, t) for arm in arms for t in ep.steps]
    for arm, t in tqdm(grid, desc="T2I arms", disable=not progress):
        sets = arm_codes(arm, world, prompts, t, ep, store)
        images = decode_codes(world, sets.codes)
        row = scorer.score(images, scored, ep.bootstrap, ep.seed).to_dict() if scorer is not None else {}
        row["images"] = len(images)
        row["reused_samples"] = sets.reused == ep.images_per_prompt  # every set taken from the teacher stage's store
        if export is not None:
            export(images, prompts, ep.images_per_prompt, Path(export_dir) / arm.name / f"steps_{t}")
        out.setdefault(arm.name, {})[f"steps_{t}"] = row
    for t in tqdm(ep.steps, desc="timing", disable=not progress):
        for name, seconds in seconds_per_image(arms, world, prompts, t, ep).items():
            out[name][f"steps_{t}"]["seconds_per_image"] = seconds
        for name, seconds in seconds_per_image_batch1(arms, world, prompts, t, ep).items():
            out[name][f"steps_{t}"]["seconds_per_image_batch1"] = seconds
    return out


def mmu_runs(teacher: ShowoModel, student: ShowoModel, arms: Sequence[T2IArm] = ()) -> dict:
    """The MMU arms: name -> (model, decoder); each student arm decodes with Jacobi as `<name>_jacobi`."""
    runs = {"teacher_ar": (teacher, "ar"), "teacher_jacobi": (teacher, "jacobi"), "turbo_jacobi": (student, "jacobi")}
    runs.update({f"{a.name}_jacobi": (a.model, "jacobi") for a in arms})
    return runs


def tokens_per_second_batch1(model: ShowoModel, world: World, decoder: str, ep: EvaluateParams, questions: int,
                             **kw) -> float:
    """Answer tokens per second with questions one at a time (the first `questions`, after a
    one-question warm-up); `kw` as mmu_eval's."""
    mmu_eval(model, world, decoder, batch_size=1, limit=1, **kw)
    return mmu_eval(model, world, decoder, batch_size=1, limit=questions, **kw)["tokens_per_second"]


def evaluate_mmu(teacher: ShowoModel, student: ShowoModel, world: World, ep: EvaluateParams,
                 arms: Sequence[T2IArm] = ()) -> dict:
    """{teacher_ar, teacher_jacobi, turbo_jacobi, turbo_<stage>_jacobi...: {accuracy, forwards_per_token (stop="eot"),
    forwards_per_token_block (stop="block"), tokens_per_second, tokens_per_second_batch1, and per question type
    accuracy_<kind>, forwards_per_token_<kind>, tokens_per_second_batch1_<kind>, cider_<kind> (captioning)}}."""
    out = {}
    kinds = sorted({q.kind for q in world.eval_mmu()[0]})
    for name, (model, decoder) in mmu_runs(teacher, student, arms).items():
        kw = {"block_size": ep.block_size, "seed": ep.seed, "precision": ep.precision, "jacobi_stop": "eot"}
        r = mmu_eval(model, world, decoder, batch_size=ep.batch_size, **kw)
        out[name] = {k: v for k, v in r.items() if k != "examples"}
        block = r if decoder == "ar" else mmu_eval(model, world, decoder, batch_size=ep.batch_size,
                                                    **{**kw, "jacobi_stop": "block"})
        out[name]["forwards_per_token_block"] = block["forwards_per_token"]
        out[name]["tokens_per_second_batch1"] = tokens_per_second_batch1(model, world, decoder, ep, ep.timing_batch, **kw)
        for kind in kinds:  # per question type: the Jacobi speed-up where answers are long (describe, captions)
            out[name][f"tokens_per_second_batch1_{kind}"] = tokens_per_second_batch1(model, world, decoder, ep, ep.timing_batch,
                                                                                     kind=kind, **kw)
    return out


def evaluate_arms(teacher: ShowoModel, student: ShowoModel, world: World, ep: EvaluateParams,
                  arms: Sequence[T2IArm] = (), progress: bool = True, export_dir: str | Path | None = None,
                  store=None, teacher_sha256: str = "") -> dict:
    """metrics/evaluate.json: `t2i.<arm>.steps_<T>.{score, ci_low, ci_high, seconds_per_image, <category>}`
    and `mmu.<arm>.{accuracy, forwards_per_token, tokens_per_second}`, plus the headline ratios.
    `arms`: the stages scored as arms of their own (`student_arms`); `export_dir` as evaluate_t2i's; `store` and
    `teacher_sha256`: the teacher stage's samples, reused by the teacher arms where the settings match."""
    t2i = evaluate_t2i(t2i_arms(teacher, student, ep, arms, teacher_sha256), world, ep, progress, export_dir, store)
    mmu = evaluate_mmu(teacher, student, world, ep, arms)
    return {"t2i": t2i, "mmu": mmu, "summary": headline(t2i, mmu, ep)}


def headline(t2i: dict, mmu: dict, ep: EvaluateParams) -> dict:
    """The comparisons the paper leads with: every student arm at every step count against the
    teacher at its most steps with CFG (score difference, score ratio, speed-up), and Jacobi passes
    per token relative to the teacher's."""
    most = f"steps_{max(ep.steps)}"
    ref = t2i["teacher_cfg"][most]
    scored = "score" in ref  # a world without a scorer: speed-ups only
    out: dict = {"teacher_cfg_reference": {"steps": max(ep.steps), "score": ref.get("score")}}
    for arm in (a for a in t2i if a.startswith("turbo")):
        for t in ep.steps:
            s = t2i[arm][f"steps_{t}"]
            row = {"speedup_vs_reference": ref["seconds_per_image"] / s["seconds_per_image"]}
            if scored:
                row = {"score_minus_reference": s["score"] - ref["score"],
                       "score_ratio_to_reference": s["score"] / ref["score"] if ref["score"] else 0.0, **row}
            out[f"{arm}_steps_{t}"] = row
    out["mmu"] = {}
    for arm in (a for a in t2i if a.startswith("turbo") and f"{a}_jacobi" in mmu):
        r = mmu[f"{arm}_jacobi"]
        out["mmu"][f"{arm}_forwards_ratio"] = r["forwards_per_token"] / mmu["teacher_jacobi"]["forwards_per_token"]
        out["mmu"][f"{arm}_accuracy_minus_teacher_ar"] = r["accuracy"] - mmu["teacher_ar"]["accuracy"]
    return out


# --------------------------------------------------------------------------------------------
# Tables, DVC plot files, the sample grid.


def t2i_table(metrics: dict):
    """One row per (arm, steps): score, 95% interval, the world's categories, seconds per image."""
    import pandas as pd
    rows = []
    for arm, by_steps in metrics["t2i"].items():
        for key, r in by_steps.items():
            rows.append({"arm": arm, "steps": int(key.split("_")[1]), "score": r.get("score"), "ci_low": r.get("ci_low"),
                         "ci_high": r.get("ci_high"), **{c: r[c] for c in r if c not in NOT_CATEGORIES}, "s/image": r["seconds_per_image"],
                         "s/image batch 1": r["seconds_per_image_batch1"]})
    return pd.DataFrame(rows).set_index(["arm", "steps"])


def mmu_table(metrics: dict):
    import pandas as pd
    return pd.DataFrame({arm: {k: r[k] for k in MMU_KEYS} for arm, r in metrics["mmu"].items()}).T


def plot_rows(metrics: dict, field: str) -> list[dict]:
    """Wide rows `{steps, <arm>...}` of one T2I field, for a DVC plot."""
    steps = sorted({int(k.split("_")[1]) for r in metrics["t2i"].values() for k in r})
    return [{"steps": t, **{arm: metrics["t2i"][arm][f"steps_{t}"].get(field) for arm in metrics["t2i"]}} for t in steps]


def write_plot_files(metrics: dict, out_dir: str | Path) -> list[Path]:
    """`score.csv` and `seconds_per_image.csv` (steps x arm), declared as plots in dvc.yaml."""
    import pandas as pd
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for quantity, name in (("score", "score.csv"), ("seconds_per_image", "seconds_per_image.csv")):
        with atomic_path(out_dir / name) as tmp:
            pd.DataFrame(plot_rows(metrics, quantity)).to_csv(tmp, index=False)
        paths.append(out_dir / name)
    return paths


def sample_images(teacher: ShowoModel, student: ShowoModel, world: World, ep: EvaluateParams,
                  arms: Sequence[T2IArm] = ()) -> tuple[np.ndarray, list[str]]:
    """One held-out prompt per category at every step count: a row of teacher_cfg images, then a row
    of each student arm's images (same seed), for the report's side-by-side grid."""
    prompts = eval_prompts_subset(world, 1)
    shown = [a for a in t2i_arms(teacher, student, ep, arms) if a.name != "teacher_nocfg"]
    images, captions = [], []
    for t in ep.steps:
        for arm in shown:
            name = arm.name
            images.append(generate_images(arm.model, world, prompts, t, arm.cfg_scale, seed=ep.seed, precision=ep.precision,
                                          sample=ep.sample, **arm.sampler(t)))
            captions += [f"{name} {t}: {p.text}" for p in prompts]
    return np.concatenate(images), captions
