"""Noise-input distribution matching: a few-step image student beside the paper's consistency
curriculum (Di[M]O, Zhu et al., ICCV 2025, arXiv 2503.15457; DESIGN.md 1.2).

From an all-[MASK] state a one-pass student has nothing to choose a layout with: its product of
per-position distributions can only hedge across layouts. Here the student (the generator) starts
from a noisy state, a fixed fraction `mask_ratio` of [MASK] and random codes elsewhere, so the
random codes can act as its latent. It is trained on its own samples. One generator update:

1. noisy start (`sampling.noisy_initial_state`), one generator pass: logits at every position
   (or, with `train_steps` > 1, the generator's own few-step rollout, `student_rollout`: each
   position keeps the logits of the pass that fixed it);
2. sample x from those logits (no gradient flows through the sample);
3. re-mask x at a random ratio (Di[M]O's arccos schedule): x_t;
4. the frozen teacher with CFG and the auxiliary model predict at x_t: p_teacher, p_aux;
5. the generator's logits get the gradient g = p_aux - p_teacher (forward KL; `jeffreys_beta` mixes
   in reverse KL) at the positions masked in x_t and none elsewhere, through the surrogate
   0.5 ||logits - sg(logits - g)||^2 (summed over positions and codes, averaged over samples, or with
   `surrogate_norm: mean` averaged over the masked positions);
6. text: the consistency stages' Jacobi consistency + AR + LM losses from the trajectory store, in
   the same forward, so the result is one student for images and text.

Then `aux_updates` auxiliary updates: fresh generator samples, re-masked, cross-entropy with label
smoothing at the masked positions. The auxiliary model (a copy of the teacher at the start) thus
tracks what the generator draws, and p_aux - p_teacher says where the generator's distribution
differs from the teacher's (`aux_init`: the auxiliary model starts as the teacher, Di[M]O's choice,
or as the generator's own start when that is a distilled student). At inference the student samples from the same noisy start at 1 step,
or continues with Show-o's cosine re-masking for more (`t2i_generate(init_mask_ratio=...)`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .consistency import DistillBatches, total_loss, text_losses, warmup_lr
from .io import read_torch_state
from .matched_samples import MatchedObjective, matched_image_loss, teacher_pool
from .model import (CheckpointError, ShowoModel, image_state_ids, lm_loss, load_model, resolve_precision, save_model,
                    t2i_sequences)
from .params import CurriculumStage, DistillParams
from .shards import sha256_of
from .sampling import arccos_schedule, guided_logits, gumbel_noise, log, noisy_initial_state, remask, tokens_to_remask  # noqa: F401 (arccos_schedule: re-exported)

# --------------------------------------------------------------------------------------------
# Small helpers.


def sample_codes(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One code per position from softmax(logits) [B, N, C] (on the CPU, seeded)."""
    probs = logits.detach().float().cpu().softmax(-1)
    return torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:-1])


def student_rollout(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, start: torch.Tensor,
                    steps: int, temperature: float, embed_noise: float = 0.0,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's own `steps`-step sample from the noisy `start`, with the sampler's rules
    (`t2i_generate(init_mask_ratio=...)`, multinomial, Show-o's annealed Gumbel re-masking).
    Returns (codes [B, N], logits [B, N, C]) where each position's logits are those of the pass
    that fixed its code, with their graph when grad is on: the matching gradient then reaches
    every pass, each at the positions it decided. steps = 1 is Di[M]O's one pass."""
    cfg, dev = model.config, model.device
    B, N = start.shape
    codes = torch.full((B, N), -1, dtype=torch.long)
    decided = None
    temp = temperature
    for k in range(steps):
        # 1. One pass: the noisy start first (every position to predict), then the re-masked sample.
        state = start if k == 0 else codes
        ids = t2i_sequences(captions, caption_len, image_state_ids(state, cfg), cfg).to(dev)
        logits = model.image_logits(ids, None, embed_noise if k == 0 else 0.0, generator)
        # 2. Sample the open positions; this pass's logits now stand for them.
        unknown = codes < 0
        sampled = torch.where(unknown, sample_codes(logits, generator), codes)
        decided = logits if decided is None else torch.where(unknown.to(dev).unsqueeze(-1), logits, decided)
        if k == steps - 1:
            return sampled, decided
        # 3. Re-mask the least confident open positions (annealed Gumbel noise), as the sampler does.
        temp = temp * (1 - (k + 1) / steps)
        probs = logits.detach().float().cpu().softmax(-1)
        confidence = log(probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1))
        if temp > 0:
            confidence = confidence + temp * gumbel_noise(confidence.shape, generator)
        confidence = torch.where(unknown, confidence, torch.finfo(confidence.dtype).max)
        n_mask = tokens_to_remask(k, steps, N, unknown.sum(-1))
        rank = confidence.argsort(-1).argsort(-1)
        codes = torch.where(rank < n_mask.unsqueeze(-1), -1, sampled)
    raise ValueError(f"steps must be >= 1, got {steps}")


def matching_gradient(p_aux: torch.Tensor, p_teacher: torch.Tensor, masked: torch.Tensor,
                      jeffreys_beta: float = 0.0) -> torch.Tensor:
    """[B, N, C] gradient for the generator's logits: p_aux - p_teacher (the gradient of the forward
    KL(p_teacher || p_aux) in p_aux's logits); with beta > 0 mixed with the reverse KL's gradient
    p_aux (log p_aux - log p_teacher - KL(p_aux || p_teacher)). Zero where `masked` is False."""
    grad = p_aux - p_teacher
    if jeffreys_beta > 0:
        log_a, log_t = p_aux.clamp(min=1e-20).log(), p_teacher.clamp(min=1e-20).log()
        rkl = (p_aux * (log_a - log_t)).sum(-1, keepdim=True)
        grad = (1 - jeffreys_beta) * grad + jeffreys_beta * p_aux * (log_a - log_t - rkl)
    return torch.where(masked.unsqueeze(-1), grad, torch.zeros_like(grad))


def surrogate_loss(logits: torch.Tensor, grad: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
    """0.5 ||logits - sg(logits - grad)||^2 / B: its gradient in `logits` is exactly grad / B (Di[M]O's
    scale, a sum over positions). With `masked` [B, N], divided by the number of masked positions
    instead (gradient grad / masked.sum()): a mean per masked position, the scale of the
    consistency stages' image loss, so that the text terms keep their weight beside it."""
    logits = logits.float()
    total = 0.5 * (logits - (logits - grad).detach()).pow(2).sum()
    if masked is not None:
        return total / masked.sum().clamp(min=1)
    return total / logits.shape[0]


# --------------------------------------------------------------------------------------------
# The two objectives.


class DMObjective(nn.Module):
    """The generator's losses (steps 1-6 above). Only the student is a registered submodule: the
    frozen teacher and the auxiliary model (trained by its own objective) are plain attributes, so
    DDP synchronises the student's gradients alone."""

    def __init__(self, student: ShowoModel, teacher: ShowoModel, aux: ShowoModel, dp: DistillParams):
        super().__init__()
        self.student, self.dp = student, dp
        self.__dict__["teacher"], self.__dict__["aux"] = teacher, aux  # not submodules (see above)

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        m, dm, cfg = self.student, self.dp.dm, self.student.config
        dev = m.device
        caps, lens = batch["caption"].cpu(), batch["caption_len"].cpu()  # bookkeeping on the CPU, as the sampler
        out = {}
        # 1-2. The generator's own sample from the noisy start (one pass, or a few-step rollout) and
        # the logits that drew each position.
        x, logits = student_rollout(m, caps, lens, batch["start"].cpu(), int(batch.get("steps", 1)), dm.rollout_temperature,
                                    dm.embed_noise, generator)
        # 3. Re-masked at a random ratio.
        x_t, masked = remask(x, generator)
        # 4. Teacher (with CFG) and auxiliary model at the masked positions; no gradient.
        with torch.no_grad():
            p_teacher = guided_logits(self.teacher, caps, lens, image_state_ids(x_t, cfg), dm.teacher_cfg_scale).softmax(-1)
            p_aux = guided_logits(self.aux, caps, lens, image_state_ids(x_t, cfg), 0.0).softmax(-1)
        # 5. Distribution matching through the surrogate.
        grad = matching_gradient(p_aux, p_teacher, masked, dm.jeffreys_beta)
        out["image"] = surrogate_loss(logits, grad.to(dev), masked.to(dev) if dm.surrogate_norm == "mean" else None)
        if dm.image_loss == "dm_matched":  # plus cross-entropy to paired teacher samples (matched_samples.py)
            out["image_dm"] = out["image"].detach()
            loss, diagnostics = matched_image_loss(m, self.teacher, self.dp, *(batch[f"matched_{k}"].cpu() for k in
                                                   ("caption", "caption_len", "start", "samples")), generator)
            out["image"] = out["image"] + dm.matched_weight * loss
            out.update(diagnostics)
        # 6. Text: LM on the captions, Jacobi consistency + AR on the trajectory store's rows.
        out["lm"] = lm_loss(m, caps.to(dev), lens.to(dev))
        out.update(text_losses(m, {k: v.to(dev) for k, v in batch.items()}))
        out["total"] = total_loss(out, self.dp)
        # Diagnostic: total variation between auxiliary and teacher at the masked positions.
        out["tv_aux_teacher"] = 0.5 * (p_aux - p_teacher).abs().sum(-1)[masked].mean().to(dev)
        return out


class AuxObjective(nn.Module):
    """The auxiliary model's loss: cross-entropy (label smoothing) on the generator's samples at the
    masked positions of their re-masked states."""

    def __init__(self, aux: ShowoModel, label_smoothing: float):
        super().__init__()
        self.aux, self.label_smoothing = aux, label_smoothing

    def forward(self, ids: torch.Tensor, masked: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.aux.image_logits(ids)
        return F.cross_entropy(logits[masked].float(), target[masked], label_smoothing=self.label_smoothing)


# --------------------------------------------------------------------------------------------
# One dm stage's training state (the interface of distill.ConsistencyTraining).


class DMTraining:
    """Generator (the student), auxiliary model, frozen teacher, their optimizers and an optional EMA
    of the generator; `step` does one generator update and `aux_updates` auxiliary updates."""

    def __init__(self, acc, stage: CurriculumStage, dp: DistillParams, trajectories_dir: str | Path,
                 init_dir: str | Path, teacher_dir: str | Path, resume: Path | None = None,
                 pool_path: str | Path | None = None):
        self.acc, self.dp, dm = acc, dp, dp.dm
        self.matched = dm.image_loss == "matched"  # no auxiliary model; dm_matched keeps it and adds the pool
        teacher_path = Path(teacher_dir) / "model.safetensors"
        student = load_model((resume or Path(init_dir)) / "model.safetensors").train()
        teacher = load_model(teacher_path).requires_grad_(False).to(acc.device)
        self.ema = None
        if dm.ema_decay > 0:
            self.ema = (load_model(resume / "ema.safetensors") if resume else copy.deepcopy(student)).requires_grad_(False)
            self.ema = self.ema.to(acc.device)
        opt_g = torch.optim.AdamW(student.parameters(), lr=dm.lr, weight_decay=dp.weight_decay)
        state = read_torch_state(resume / "state.pt", CheckpointError) if resume is not None else None
        if state is not None:
            opt_g.load_state_dict(state["optimizer"])
        self.batches = DistillBatches(trajectories_dir, stage, dp, student.config)
        self.cfg = student.config
        if dm.image_loss != "dm":  # matched and dm_matched train on the teacher's sample pool
            self.pool_caption, self.pool_caption_len, self.pool = self._pool(teacher, sha256_of(teacher_path), pool_path)
        if self.matched:  # no auxiliary model: the targets are the teacher's own samples
            self.aux = self.opt_a = self.aux_objective = None
            self.objective, self.opt_g = acc.prepare(MatchedObjective(student, dp, teacher), opt_g)
            return
        aux_start = teacher_path if dm.aux_init == "teacher" else Path(init_dir) / "model.safetensors"
        aux = load_model(resume / "aux.safetensors" if resume else aux_start).train()
        opt_a = torch.optim.AdamW(aux.parameters(), lr=dm.aux_lr, weight_decay=0.0)
        if state is not None:
            opt_a.load_state_dict(state["aux_optimizer"])
        self.objective, self.aux_objective, self.opt_g, self.opt_a = acc.prepare(
            DMObjective(student, teacher, aux, dp), AuxObjective(aux, dm.label_smoothing), opt_g, opt_a)
        self.aux = aux

    def _pool(self, teacher: ShowoModel, teacher_sha256: str,
              path: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(captions, caption lengths, [pool_captions, pool_samples, N] teacher samples) of the first
        training captions, the samples built by the main process into `path` (resumable) and read by
        every process."""
        dm, t2i, acc = self.dp.dm, self.batches.t2i, self.acc
        if path is None:
            raise ValueError("image_loss matched needs a pool_path (the stage's folder keeps the teacher's samples)")
        n = min(dm.pool_captions, len(t2i["caption"]))
        caps, lens = t2i["caption"][:n].long(), t2i["caption_len"][:n].long()
        args = (teacher, caps, lens, path, teacher_sha256, dm.pool_samples, dm.pool_steps, dm.teacher_cfg_scale,
                dm.pool_temperature, self.dp.seed)
        precision = resolve_precision(self.dp.precision, acc.device)
        if acc.is_main_process:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pool = teacher_pool(*args, precision=precision)
        acc.wait_for_everyone()
        if not acc.is_main_process:  # reads the main process's finished file
            pool = teacher_pool(*args, precision=precision, progress=False)
        return caps, lens, pool

    def _start(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Captions of `batch_t2i` trajectory-store rows and a noisy start for each."""
        t2i, cfg = self.batches.t2i, self.cfg
        rows = torch.randint(0, len(t2i["caption"]), (self.dp.dm.batch_t2i,), generator=g)
        start = noisy_initial_state(len(rows), cfg.num_image_tokens, cfg.codebook_size, self.dp.dm.mask_ratio, g)
        return t2i["caption"][rows].long(), t2i["caption_len"][rows].long(), start

    def _matched_batch(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        """batch_t2i / pool_samples pool captions, each with pool_samples noisy starts and its samples."""
        dm, cfg = self.dp.dm, self.cfg
        K = dm.pool_samples
        rows = torch.randint(0, len(self.pool), (dm.batch_t2i // K,), generator=g)
        start = noisy_initial_state(len(rows) * K, cfg.num_image_tokens, cfg.codebook_size, dm.mask_ratio, g)
        return {"caption": self.pool_caption[rows].repeat_interleave(K, 0),
                "caption_len": self.pool_caption_len[rows].repeat_interleave(K, 0), "start": start,
                "samples": self.pool[rows].long()}

    def _rollout_steps(self, g: torch.Generator) -> int:
        """The generator's step count for this sample, drawn from `distill.dm.train_steps`."""
        choices = self.dp.dm.train_steps
        if len(choices) == 1:  # no draw: the one-pass default keeps its random stream
            return choices[0]
        return choices[int(torch.randint(0, len(choices), (1,), generator=g))]

    @torch.no_grad()
    def _aux_batch(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Fresh generator samples, re-masked: the auxiliary model's inputs and targets."""
        caps, lens, start = self._start(g)
        gen, cfg, dev, dm = self.student_model(), self.cfg, self.acc.device, self.dp.dm
        with self.acc.autocast():
            x, _ = student_rollout(gen, caps, lens, start, self._rollout_steps(g), dm.rollout_temperature,
                                   dm.embed_noise, g)
        x_t, masked = remask(x, g)
        return {"ids": t2i_sequences(caps, lens, image_state_ids(x_t, cfg), cfg).to(dev), "masked": masked.to(dev),
                "target": x.to(dev)}

    def step(self, step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        acc, dp, dm = self.acc, self.dp, self.dp.dm
        for opt, lr in ((self.opt_g, dm.lr), (self.opt_a, dm.aux_lr)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = warmup_lr(step, lr, dp.warmup_steps)
        # The generator update.
        if self.matched:
            batch = {**self._matched_batch(g), **self.batches.draw_text(g)}
        else:
            caps, lens, start = self._start(g)
            batch = {"caption": caps, "caption_len": lens, "start": start, "steps": torch.tensor(self._rollout_steps(g)),
                     **self.batches.draw_text(g)}
            if dm.image_loss == "dm_matched":
                batch.update({f"matched_{k}": v for k, v in self._matched_batch(g).items()})
        with acc.autocast():
            losses = self.objective(batch, g)
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(losses["total"])
        acc.clip_grad_norm_(self.objective.parameters(), dp.grad_clip)
        self.opt_g.step()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.student_model().parameters()):
                    e.lerp_(p.detach(), 1 - dm.ema_decay)
        if self.matched:
            return losses
        # The auxiliary updates, on samples of the updated generator.
        aux_losses = []
        for _ in range(dm.aux_updates):
            ab = self._aux_batch(g)
            with acc.autocast():
                loss = self.aux_objective(**ab)
            self.opt_a.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(self.aux_objective.parameters(), dp.grad_clip)
            self.opt_a.step()
            aux_losses.append(loss.detach())
        losses["aux"] = torch.stack(aux_losses).mean()
        return losses

    def student_model(self) -> ShowoModel:
        """The generator being trained."""
        return self.acc.unwrap_model(self.objective).student

    def student(self) -> ShowoModel:
        """The stage's result: the generator's EMA when on, else the generator."""
        return self.ema if self.ema is not None else self.student_model()

    def save(self, folder: Path) -> None:
        save_model(self.student_model(), folder / "model.safetensors")
        if self.ema is not None:
            save_model(self.ema, folder / "ema.safetensors")
        state = {"optimizer": self.opt_g.state_dict()}
        if self.aux is not None:
            save_model(self.aux, folder / "aux.safetensors")
            state["aux_optimizer"] = self.opt_a.state_dict()
        torch.save(state, folder / "state.pt")
