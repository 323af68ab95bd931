"""Noise-input distribution matching (`method: dm`, preset params/dm.yaml): a few-step image
student beside the paper's curriculum (Di[M]O, Zhu et al., ICCV 2025, arXiv 2503.15457;
docs/method.md, section 6).

From an all-[MASK] state a one-pass student has nothing to choose a layout with: its product of
per-position distributions can only hedge across layouts. Here the student (the generator) starts
from a noisy state, a fraction `mask_ratio` of [MASK] and random codes elsewhere, so that the random
codes can act as its latent, and it is trained on its own samples. One generator update:

1. noisy start (`sampling.noisy_initial_state`), the generator's own rollout of a step count drawn
   from `train_steps` (`student_rollout`: the sampler's MaskGIT steps; each position keeps the
   logits of the pass that fixed it);
2. the sample x from those logits (no gradient flows through the sample);
3. x re-masked at a random ratio (Di[M]O's arccos schedule): x_t;
4. the frozen teacher with CFG and the auxiliary model predict at x_t: p_teacher, p_aux;
5. the generator's logits get the gradient g = p_aux - p_teacher (the forward KL's) at the
   positions masked in x_t, through the surrogate 0.5 ||logits - sg(logits - g)||^2 averaged over
   the masked positions (the consistency loss's scale, so that the text terms keep their weight);
6. text: the shared Jacobi consistency + AR + LM losses (methods/text.py), in the same forward.

Then `aux_updates` auxiliary updates: fresh generator samples, re-masked, cross-entropy with label
smoothing at the masked positions. The auxiliary model (the teacher at the start) thus tracks what
the generator draws, and p_aux - p_teacher says where the generator's distribution differs from
the teacher's. At inference the student samples from the same noisy start
(`t2i_generate(init_mask_ratio=...)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..model.sampling import annealed_temperature, guided_logits, maskgit_step, noisy_initial_state, remask
from ..model.showo import (CheckpointError, ShowoModel, image_state_ids, lm_loss, load_model, save_model,
                           t2i_sequences)
from ..pipeline.io import read_torch_state
from ..pipeline.params import DistillParams, ListOf, NonNeg, Number, PosInt, Section, StageEntry
from ..training.loop import optimizer_update, set_lr, warmup_lr
from .text import TrajectoryBatches, text_losses, total_loss

USES_TEACHER = True


class Params(Section):
    """`distill.dm`: the dm stages' budget, batch, learning rates, noisy start and targets."""

    steps: PosInt
    batch_t2i: PosInt
    lr: NonNeg
    aux_lr: NonNeg
    aux_updates: PosInt
    mask_ratio: Annotated[Number, Field(ge=0.0, le=1.0)]
    teacher_cfg_scale: NonNeg
    label_smoothing: Annotated[Number, Field(ge=0.0, le=0.5)]
    train_steps: ListOf(PosInt)
    rollout_temperature: NonNeg


def sampler_start(section: Params) -> dict:
    return {"init_mask_ratio": section.mask_ratio}  # its noisy start, as trained


def scored_steps(eval_steps: tuple[int, ...]) -> list[int]:
    return sorted({1, *eval_steps})  # from a noisy start one pass is already an image


# --------------------------------------------------------------------------------------------
# Steps 1, 5.


def student_rollout(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, start: torch.Tensor,
                    steps: int, temperature: float,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's own `steps`-step sample from the noisy `start` with the sampler's step
    (`sampling.maskgit_step`: multinomial, Show-o's annealed Gumbel re-masking). Returns (codes
    [B, N], logits [B, N, C]) where each position's logits are those of the pass that fixed its
    code, with their graph when grad is on: the matching gradient then reaches every pass, each at
    the positions it decided. steps = 1 is Di[M]O's one pass."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cfg, dev = model.config, model.device
    codes = torch.full(start.shape, -1, dtype=torch.long)
    decided = None
    for k in range(steps):
        state = start if k == 0 else codes  # the noisy start first (every position to predict)
        logits = model.image_logits(t2i_sequences(captions, caption_len, image_state_ids(state, cfg), cfg).to(dev))
        unknown = codes < 0
        decided = logits if decided is None else torch.where(unknown.to(dev).unsqueeze(-1), logits, decided)
        step = maskgit_step(logits.detach().float().cpu().softmax(-1), codes, k, steps,
                            annealed_temperature(temperature, k, steps), generator)
        codes = step.codes
    return step.sampled, decided


def surrogate_loss(logits: torch.Tensor, grad: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """0.5 ||logits - sg(logits - grad)||^2 / (masked positions): its gradient in `logits` is exactly
    grad / masked.sum()."""
    logits = logits.float()
    return 0.5 * (logits - (logits - grad).detach()).pow(2).sum() / masked.sum().clamp(min=1)


class DMObjective(nn.Module):
    """The generator's losses (steps 1-6). Only the student is a registered submodule: the frozen
    teacher and the auxiliary model (trained by its own objective) are plain attributes, so DDP
    synchronises the student's gradients alone."""

    def __init__(self, student: ShowoModel, teacher: ShowoModel, aux: ShowoModel, dp: DistillParams):
        super().__init__()
        self.student, self.dp, self.section = student, dp, dp.method("dm")
        self.__dict__["teacher"], self.__dict__["aux"] = teacher, aux  # not submodules (see above)

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        m, dm, cfg = self.student, self.section, self.student.config
        dev = m.device
        caps, lens = batch["caption"].cpu(), batch["caption_len"].cpu()  # bookkeeping on the CPU, as the sampler
        out = {}
        # 1-2. The generator's own sample from the noisy start and the logits that drew each position.
        x, logits = student_rollout(m, caps, lens, batch["start"].cpu(), int(batch["steps"]), dm.rollout_temperature,
                                    generator)
        # 3. Re-masked at a random ratio.
        x_t, masked = remask(x, generator)
        # 4. Teacher (with CFG) and auxiliary model at the masked positions; no gradient.
        with torch.no_grad():
            p_teacher = guided_logits(self.teacher, caps, lens, image_state_ids(x_t, cfg), dm.teacher_cfg_scale).softmax(-1)
            p_aux = guided_logits(self.aux, caps, lens, image_state_ids(x_t, cfg), 0.0).softmax(-1)
        # 5. Distribution matching through the surrogate: the forward KL's gradient p_aux - p_teacher.
        grad = torch.where(masked.unsqueeze(-1), p_aux - p_teacher, torch.zeros_like(p_aux))
        out["image"] = surrogate_loss(logits, grad.to(dev), masked.to(dev))
        # 6. Text: LM on the captions, Jacobi consistency + AR on the trajectory store's rows.
        out["lm"] = lm_loss(m, caps.to(dev), lens.to(dev))
        out.update(text_losses(m, {k: v.to(dev) for k, v in batch.items()}))
        out["total"] = total_loss(out, self.dp)
        # Logged: total variation between auxiliary and teacher at the masked positions.
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


class Training:
    """Generator (the student), auxiliary model, frozen teacher and their optimizers; `step` does
    one generator update and `aux_updates` auxiliary updates."""

    def __init__(self, acc, stage: StageEntry, dp: DistillParams, trajectories_dir: str | Path,
                 teacher_dir: str | Path, resume: Path | None = None):
        self.acc, self.dp, dm = acc, dp, dp.method("dm")
        self.section = dm
        teacher_path = Path(teacher_dir) / "model.safetensors"
        student = load_model((resume or Path(stage.init_dir)) / "model.safetensors").train()
        teacher = load_model(teacher_path).requires_grad_(False).to(acc.device)
        aux = load_model(resume / "aux.safetensors" if resume else teacher_path).train()
        opt_g = torch.optim.AdamW(student.parameters(), lr=dm.lr, weight_decay=dp.weight_decay)
        opt_a = torch.optim.AdamW(aux.parameters(), lr=dm.aux_lr, weight_decay=0.0)
        if resume is not None:
            state = read_torch_state(resume / "state.pt", CheckpointError)
            opt_g.load_state_dict(state["optimizer"])
            opt_a.load_state_dict(state["aux_optimizer"])
        self.batches = TrajectoryBatches(trajectories_dir, stage, dp, student.config)
        self.cfg, self.aux = student.config, aux
        self.objective, self.aux_objective, self.opt_g, self.opt_a = acc.prepare(
            DMObjective(student, teacher, aux, dp), AuxObjective(aux, dm.label_smoothing), opt_g, opt_a)

    def _start(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Captions of `batch_t2i` trajectory-store rows and a noisy start for each."""
        t2i, cfg = self.batches.t2i, self.cfg
        rows = torch.randint(0, len(t2i["caption"]), (self.section.batch_t2i,), generator=g)
        start = noisy_initial_state(len(rows), cfg.num_image_tokens, cfg.codebook_size, self.section.mask_ratio, g)
        return t2i["caption"][rows].long(), t2i["caption_len"][rows].long(), start

    def _rollout_steps(self, g: torch.Generator) -> int:
        """The generator's step count for this sample, drawn from `train_steps`."""
        choices = self.section.train_steps
        if len(choices) == 1:  # no draw: the one-pass setting keeps its random stream
            return choices[0]
        return choices[int(torch.randint(0, len(choices), (1,), generator=g))]

    @torch.no_grad()
    def _aux_batch(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Fresh generator samples, re-masked: the auxiliary model's inputs and targets."""
        caps, lens, start = self._start(g)
        cfg, dev = self.cfg, self.acc.device
        with self.acc.autocast():
            x, _ = student_rollout(self.student(), caps, lens, start, self._rollout_steps(g),
                                   self.section.rollout_temperature, g)
        x_t, masked = remask(x, g)
        return {"ids": t2i_sequences(caps, lens, image_state_ids(x_t, cfg), cfg).to(dev), "masked": masked.to(dev),
                "target": x.to(dev)}

    def step(self, step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        acc, dp, dm = self.acc, self.dp, self.section
        set_lr(self.opt_g, warmup_lr(step, dm.lr, dp.warmup_steps))
        set_lr(self.opt_a, warmup_lr(step, dm.aux_lr, dp.warmup_steps))
        # The generator update.
        caps, lens, start = self._start(g)
        batch = {"caption": caps, "caption_len": lens, "start": start, "steps": torch.tensor(self._rollout_steps(g)),
                 **self.batches.draw_text(g)}
        with acc.autocast():
            losses = self.objective(batch, g)
        optimizer_update(acc, self.opt_g, self.objective, losses["total"], dp.grad_clip)
        # The auxiliary updates, on samples of the updated generator.
        aux_losses = []
        for _ in range(dm.aux_updates):
            ab = self._aux_batch(g)
            with acc.autocast():
                loss = self.aux_objective(**ab)
            optimizer_update(acc, self.opt_a, self.aux_objective, loss, dp.grad_clip)
            aux_losses.append(loss.detach())
        losses["aux"] = torch.stack(aux_losses).mean()
        return losses

    def student(self) -> ShowoModel:
        return self.acc.unwrap_model(self.objective).student

    def save(self, folder: Path) -> None:
        save_model(self.student(), folder / "model.safetensors")
        save_model(self.aux, folder / "aux.safetensors")
        torch.save({"optimizer": self.opt_g.state_dict(), "aux_optimizer": self.opt_a.state_dict()}, folder / "state.pt")
