"""The teacher: trained from scratch on the Shapes world (the recipe behind the shipped checkpoint),
the shipped checkpoint itself, or an official Show-o checkpoint.

Scratch recipe (Show-o's pre-training objective at Shapes scale): every step mixes a T2I batch
(cosine mask ratio, caption dropped with p=`cond_dropout` for CFG), an MMU batch (answer-only
next-token loss) and an LM loss on the T2I captions; AdamW with linear warmup and cosine decay.
Checkpoints (weights + optimizer + RNG state) are written atomically every `checkpoint_every`
steps, and a rerun resumes from the last one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..evaluation.harness import eval_prompts_subset, mmu_eval, t2i_sweep
from ..pipeline.errors import ShowoError
from .loop import optimizer_update, resume_point, set_lr, start_over, train_steps, warmup_lr
from ..pipeline.io import LossLog, atomic_dir, exclusive_folder, load_json, log_loss_row, read_torch_state, save_json
from ..model.showo import (CheckpointError, default_device, hardware, ShowoConfig, ShowoModel, autocast, load_model, load_official_showo, official_showo_config, lm_loss, mask_image_tokens, mmu_loss,
                    mmu_sequences, preset_config, save_model, t2i_loss, t2i_sequences)
from ..pipeline.params import TeacherEvalParams, TeacherParams, TeacherTrainParams, to_dict
from ..evaluation.sample_store import SampleStore
from ..worlds import World


def model_config_for(world: World, preset: str) -> ShowoConfig:
    lay = world.layout
    return preset_config(preset, text_size=lay.text_size, codebook_size=lay.codebook_size,
                         num_image_tokens=world.vq.grid_shape[0] * world.vq.grid_shape[1],
                         max_caption_tokens=world.caption_tokens, sot_id=world.text.sot_id,
                         eot_id=world.text.eot_id)


def training_setup(cfg: ShowoConfig, recipe: TeacherTrainParams, device: str | torch.device) -> tuple[ShowoModel, torch.optim.Optimizer]:
    """A fresh model on `device` and its AdamW. On a GPU the step is launch-bound at these sizes, so
    training there uses SDPA attention and the fused optimizer (numerically equivalent; the saved
    config keeps `cfg.attn_implementation`, which is what CPU sampling uses)."""
    model = ShowoModel(cfg).to(device)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        model.showo.set_attn_implementation("sdpa")
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.999), weight_decay=recipe.weight_decay,
                            fused=cuda or None)
    return model, opt


def lr_at(step: int, r: TeacherTrainParams) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio * lr`."""
    return warmup_lr(step, r.lr, r.warmup_steps, r.steps, r.min_lr_ratio)


class TrainingBatches:
    """Random T2I / MMU minibatches from the world's datasets, drawn from one seeded generator."""

    def __init__(self, world: World, cfg: ShowoConfig, recipe: TeacherTrainParams, generator: torch.Generator):
        self.t2i, self.mmu = world.t2i_train(), world.mmu_train()
        self.cfg, self.r, self.g = cfg, recipe, generator

    def losses(self, model: ShowoModel) -> dict[str, torch.Tensor]:
        """Batches are drawn on the CPU (one seeded generator, so a GPU run sees the same data) and
        moved to the model's device for the forward pass."""
        cfg, r, g, off, dev = self.cfg, self.r, self.g, self.cfg.layout.code_offset, model.device
        i = torch.randint(0, len(self.t2i["codes"]), (r.batch_t2i,), generator=g)
        codes = self.t2i["codes"][i].view(len(i), -1).long()
        caption, caption_len = self.t2i["caption"][i], self.t2i["caption_len"][i].clone()
        drop = torch.rand(len(i), generator=g) < r.cond_dropout
        caption_len[drop] = 0  # the unconditional (empty-caption) prompt, for CFG
        ids, masked = mask_image_tokens(codes, cfg, g)
        seq = t2i_sequences(caption, caption_len, ids, cfg)
        out = {"t2i": t2i_loss(model, seq.to(dev), masked.to(dev), codes.to(dev))}
        out["lm"] = lm_loss(model, self.t2i["caption"][i].to(dev), self.t2i["caption_len"][i].to(dev))
        j = torch.randint(0, len(self.mmu["codes"]), (r.batch_mmu,), generator=g)
        seq, target = mmu_sequences(self.mmu["codes"][j].view(len(j), -1).long() + off, self.mmu["question"][j],
                                    self.mmu["question_len"][j], self.mmu["answer"][j], self.mmu["answer_len"][j], cfg)
        out["mmu"] = mmu_loss(model, seq.to(dev), target.to(dev))
        out["total"] = r.weight_t2i * out["t2i"] + r.weight_mmu * out["mmu"] + r.weight_lm * out["lm"]
        return out


def _save_state(ckpt: Path, model, opt, step: int, g: torch.Generator, recipe: TeacherTrainParams, elapsed: float) -> None:
    """Weights (safetensors) + optimizer/RNG state, swapped in as one folder."""
    with atomic_dir(ckpt) as tmp:
        save_model(model, tmp / "model.safetensors")
        torch.save({"optimizer": opt.state_dict(), "generator": g.get_state(), "torch_rng": torch.get_rng_state()},
                   tmp / "state.pt")
        save_json({"step": step, "recipe": to_dict(recipe), "elapsed_seconds": elapsed, "hardware": hardware()},
                  tmp / "progress.json")


def train_teacher(world: World, recipe: TeacherTrainParams, out_dir: str | Path, live=None, max_steps: int | None = None,
                  device: str | torch.device = "cpu", restart: bool | None = None) -> dict:
    """Train (or resume) a teacher into `out_dir/checkpoint/`; returns the final progress record.
    A checkpoint of another recipe is refused unless `restart` (training.loop.resume_point).
    `max_steps` stops early (e.g. to simulate an interruption); `live` is a DVCLive `Live` or None;
    `device` is where the model runs (the data stream is the same on every device)."""
    with exclusive_folder(out_dir):  # one run per folder
        return _train(world, recipe, Path(out_dir), live, max_steps, device, restart)


def _train(world: World, recipe: TeacherTrainParams, out: Path, live, max_steps: int | None, device: str | torch.device,
           restart: bool | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    cfg = model_config_for(world, recipe.preset)
    g = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model, opt = training_setup(cfg, recipe, device)
    step, elapsed = 0, 0.0
    prog = resume_point(ckpt, to_dict(recipe), restart=restart)
    if prog is not None:
        model.load_state_dict(load_model(ckpt / "model.safetensors").state_dict())
        state = read_torch_state(ckpt / "state.pt", CheckpointError)
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed = prog["step"], prog["elapsed_seconds"]
    elif ckpt.exists():  # a restart was asked
        start_over(ckpt, out / "history.jsonl")
    batches = TrainingBatches(world, cfg, recipe, g)
    model.train()
    stop = recipe.steps if max_steps is None else min(recipe.steps, max_steps)
    t0, log = time.time() - elapsed, LossLog(out / "history.jsonl", live, "train")
    if step:
        log.resume(step)

    def update(step: int) -> dict:
        set_lr(opt, lr_at(step, recipe))
        with autocast(recipe.precision, device):
            losses = batches.losses(model)
        optimizer_update(None, opt, model, losses["total"], recipe.grad_clip)
        return losses

    train_steps(step, stop, recipe.steps, update, log, lambda s: log.flush(s, time.time() - t0, lr=lr_at(s - 1, recipe)),
                lambda s: _save_state(ckpt, model, opt, s, g, recipe, time.time() - t0), recipe.log_every,
                recipe.checkpoint_every, "teacher")
    return load_json(ckpt / "progress.json")


# --------------------------------------------------------------------------------------------
# The stage: obtain a teacher (shipped / scratch / showo), write its card, score it.

CARD_FORMAT = "showo-turbo/teacher-card/1"


class TeacherMismatchError(ShowoError, RuntimeError):
    """The shipped teacher was trained on another world (vocabulary, codebook or lengths differ)."""


def read_card(folder: str | Path) -> dict:
    path = Path(folder) / "card.json"
    if not path.is_file():
        raise TeacherMismatchError(f"{path}: no model card (a shipped teacher needs model.safetensors + card.json)")
    card = load_json(path)
    if card.get("format") != CARD_FORMAT:
        raise TeacherMismatchError(f"{path}: format {card.get('format')!r}, expected {CARD_FORMAT!r}")
    return card


def check_card_fits_world(card: dict, world: World, where: str) -> None:
    want, have = card["world_fingerprint"], world.fingerprint()
    diff = [k for k in want if want[k] != have.get(k)]
    if diff:
        changed = [k for k in card["world_params"] if card["world_params"][k] != to_dict(world.params).get(k)]
        raise TeacherMismatchError(
            f"{where} was trained on another world ({', '.join(diff)} differ; world params that differ from its card: "
            f"{', '.join(changed) or 'none'}). Restore those params, or set teacher.source: scratch to train a new teacher.")


def check_config_fits_world(cfg: ShowoConfig, world: World, where: str) -> None:
    """The model's vocabulary and image grid must be the world's tokenizers'."""
    want = model_config_for(world, "micro")
    have = {k: getattr(cfg, k) for k in ("text_size", "codebook_size", "num_image_tokens")}
    need = {k: getattr(want, k) for k in have}
    if have != need:
        raise TeacherMismatchError(f"{where}: sizes {have} do not fit the world's tokenizers {need}")


def obtain_teacher(tp: TeacherParams, world: World, out_dir: str | Path, checkpoint_dir: str | Path, live=None) -> tuple[ShowoModel, dict]:
    """The teacher named by `tp.source`, saved as `out_dir/model.safetensors` with `out_dir/card.json`."""
    out = Path(out_dir)
    if tp.source == "shipped":
        card = read_card(tp.shipped_dir)
        check_card_fits_world(card, world, f"shipped teacher {tp.shipped_dir}")
        model = load_model(Path(tp.shipped_dir) / "model.safetensors")
    elif tp.source == "scratch":
        prog = train_teacher(world, tp.train, checkpoint_dir, live, device=default_device())
        model = load_model(Path(checkpoint_dir) / "checkpoint" / "model.safetensors")
        history = [json.loads(line) for line in open(Path(checkpoint_dir) / "history.jsonl")]
        card = make_card(world, tp.train, prog, history)
    elif tp.source == "showo":
        cfg = official_showo_config(tp.showo_dir, tp.showo_llm_dir, world.caption_tokens, world.text.sot_id,
                                    world.text.eot_id)
        check_config_fits_world(cfg, world, f"Show-o checkpoint {tp.showo_dir}")
        model = load_official_showo(tp.showo_dir, cfg)
        card = {"format": CARD_FORMAT, "source": "showo", "showo_dir": tp.showo_dir, "showo_llm_dir": tp.showo_llm_dir,
                "config": model.config.to_dict(), "train": {"minutes": None}}
    else:
        raise ValueError(f"unknown teacher source {tp.source!r}")
    save_model(model, out / "model.safetensors")
    save_json(card, out / "card.json")
    return model.to(default_device()), card


def make_card(world: World, recipe: TeacherTrainParams, progress: dict, history: list[dict]) -> dict:
    return {"format": CARD_FORMAT, "source": "scratch", "world_params": to_dict(world.params),
            "world_fingerprint": world.fingerprint(), "train_params": to_dict(recipe),
            "train": {"steps": progress["step"], "minutes": round(progress["elapsed_seconds"] / 60, 1),
                      "hardware": progress.get("hardware") or hardware()},
            "history": history, "scores": {}}


def trained_on(card: dict) -> str:
    """The GPU (or else CPU) a card's teacher was trained on."""
    hw = card.get("train", {}).get("hardware") or {}
    return hw.get("gpu") or hw.get("cpu") or "unknown"


def scale_key(s: float) -> str:
    """'cfg_2', 'cfg_1p5': no dots, so DVC's dotted metric paths stay unambiguous."""
    return "cfg_" + f"{s:g}".replace(".", "p")


def evaluate_teacher(model: ShowoModel, world: World, ep: TeacherEvalParams, card: dict, bootstrap: int = 1000,
                     samples_dir: str | Path | None = None, model_sha256: str = "") -> dict:
    """metrics/teacher.json: t2i.steps_<T>.cfg_<s>.{score, ci_low, ci_high, <category>}, mmu.accuracy, train.minutes.
    With `samples_dir` and the weights file's hash, the sampled codes are written there as a
    SampleStore, for the evaluate stage's teacher arms to reuse where their settings are the same."""
    want = model_config_for(world, "micro")
    have = model.config
    if (have.vocab_size, have.num_image_tokens, have.max_caption_tokens) != (want.vocab_size, want.num_image_tokens, want.max_caption_tokens):
        raise TeacherMismatchError(
            f"the teacher's vocabulary/sequence sizes ({have.vocab_size}, {have.num_image_tokens} image tokens) do not fit the "
            f"world ({want.vocab_size}, {want.num_image_tokens}): the world's scorer can only score a teacher of its world")
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    scales = [0.0, *[s for s in ep.cfg_scales if s != 0]]
    store = SampleStore() if samples_dir is not None and model_sha256 else None
    sweep = t2i_sweep(model, world, prompts, ep.steps, scales, bootstrap=bootstrap, seed=ep.seed, sample=ep.sample,
                      temperature=ep.temperature, precision=ep.precision, images_per_prompt=ep.images_per_prompt,
                      batch_size=ep.batch_size, store=store, model_sha256=model_sha256)
    if store is not None and len(store):
        store.save(samples_dir)
    t2i: dict = {}
    for T in ep.steps if sweep else ():  # no sweep: the world has no scorer
        t2i[f"steps_{T}"] = {scale_key(s): sweep[f"steps_{T}.cfg_{s:g}"] for s in scales}
    mmu = mmu_eval(model, world, "ar", precision=ep.precision)
    return {"t2i": t2i, "mmu": mmu, "train": {"minutes": card.get("train", {}).get("minutes")}}


def best_cfg(metrics: dict, steps: int) -> tuple[str, float]:
    row = metrics["t2i"][f"steps_{steps}"]
    key = max(row, key=lambda k: row[k]["score"])
    return key, row[key]["score"]


def log_history(live, history: list[dict]) -> None:
    """Replay a card's loss history into DVCLive (so `dvc plots` shows a shipped teacher's curves).
    A teacher without one (an official checkpoint) leaves the plots folder empty, but there."""
    (Path(live.plots_dir) / "metrics").mkdir(parents=True, exist_ok=True)  # the stage's declared plots output
    for row in history:
        log_loss_row(live, row["step"], {k: row[k] for k in ("t2i", "mmu", "lm", "total") if k in row}, "train")
