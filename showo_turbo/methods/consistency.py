"""Show-o Turbo's segmented consistency distillation, the paper's method (`method: consistency`;
docs/method.md, section 5).

One curriculum stage cuts every teacher trajectory into S segments and trains the student to jump
from any state straight to where its segment ends. One update:

1. draw `batch_t2i` trajectory rows and a step t of each; the state x_t;
2. image target: for each position still masked at x_t, the teacher's top-k distribution at the
   last step, up to the end e(t) of t's segment, at which it was still masked (min(commit, e(t)));
3. image loss: the student (no CFG) at x_t, soft-target cross-entropy averaged over the masked
   positions;
4. text: Jacobi consistency + AR on the trajectory store's MMU rows and LM on the captions
   (methods/text.py), in the same forward, so that DDP sees one forward per update;
5. total: w_img L_img + w_lm L_lm + w_text (L_text_consistency + ar_multiplier L_ar), one AdamW step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..model.showo import CheckpointError, ShowoModel, image_state_ids, lm_loss, load_model, save_model, t2i_sequences
from ..pipeline.io import read_torch_state
from ..pipeline.params import DistillParams, NonNeg, PosInt, Section, StageEntry
from ..training.loop import optimizer_update, set_lr, warmup_lr
from ..training.trajectories import segment_bounds, state_at
from .text import TrajectoryBatches, soft_cross_entropy, text_losses, total_loss

USES_TEACHER = False


class Params(Section):
    """`distill.consistency`: the consistency stages' budget, image batch and learning rate."""

    steps: PosInt
    batch_t2i: PosInt
    lr: NonNeg


def sampler_start(section: Params) -> dict:
    return {}  # all-[MASK], the paper's sampler


def scored_steps(eval_steps: tuple[int, ...]) -> list[int]:
    return list(eval_steps)


# --------------------------------------------------------------------------------------------
# Targets.


def segment_end_of(steps: int, segments: int) -> torch.Tensor:
    """[T]: the last step of the segment each step belongs to."""
    out = torch.empty(steps, dtype=torch.long)
    for start, end in segment_bounds(steps, segments):
        out[start:end + 1] = end
    return out


def image_targets(store: dict[str, torch.Tensor], rows: torch.Tensor, t: torch.Tensor, segments: int):
    """For trajectory rows `rows` at steps `t` [B]: the state x_t (-1 = masked), the masked positions
    and the top-k target distribution (renormalised) and its code indices per position."""
    codes, commit = store["codes"][rows].long(), store["commit_step"][rows].long()
    T = store["probs"].shape[1]
    end = segment_end_of(T, segments)[t]                                   # [B]
    state = state_at(codes, commit, t.view(-1, 1))
    masked = state < 0
    target_step = torch.minimum(commit, end.view(-1, 1))                   # [B, N]
    k = store["probs"].shape[-1]
    pick = target_step.view(len(rows), 1, -1, 1).expand(-1, 1, -1, k)
    probs = store["probs"][rows].float().gather(1, pick)[:, 0]             # [B, N, k]
    index = store["index"][rows].long().gather(1, pick)[:, 0]
    probs = probs / probs.sum(-1, keepdim=True).clamp(min=1e-8)
    return state, masked, probs, index


def draw_batch(batches: TrajectoryBatches, batch_t2i: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Steps 1-2: trajectory states, their targets and the text rows, drawn on the CPU."""
    t2i, cfg = batches.t2i, batches.cfg
    rows = torch.randint(0, len(t2i["codes"]), (batch_t2i,), generator=g)
    t = torch.randint(0, t2i["probs"].shape[1], (batch_t2i,), generator=g)
    state, masked, probs, index = image_targets(t2i, rows, t, batches.stage.segments)
    caption, caption_len = t2i["caption"][rows].long(), t2i["caption_len"][rows].long()
    ids = t2i_sequences(caption, caption_len, image_state_ids(state, cfg), cfg)
    return {"t2i_ids": ids, "t2i_masked": masked, "t2i_probs": probs, "t2i_index": index,
            "t2i_final": t2i["codes"][rows].long(), "caption": caption, "caption_len": caption_len,
            **batches.draw_text(g)}


class ConsistencyObjective(nn.Module):
    """Wraps the student; `forward(batch)` returns every loss of steps 3-5."""

    def __init__(self, student: ShowoModel, dp: DistillParams, section: Section | None = None):
        super().__init__()
        self.student, self.dp, self.section = student, dp, section

    def image_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # 3. Image consistency: the student, without CFG, jumps from x_t to its segment's end.
        per_pos = soft_cross_entropy(self.student.image_logits(batch["t2i_ids"]), batch["t2i_probs"], batch["t2i_index"])
        return {"image": (per_pos * batch["t2i_masked"]).sum() / batch["t2i_masked"].sum().clamp(min=1)}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m, out = self.student, self.image_losses(batch)
        # 4. LM on the captions, then text consistency (x_i towards x_e) and AR, one packed forward.
        out["lm"] = lm_loss(m, batch["caption"], batch["caption_len"])
        out.update(text_losses(m, batch))
        # 5. The weighted total.
        out["total"] = total_loss(out, self.dp)
        return out


class Training:
    """One consistency stage's training state: the student, its AdamW and its batches. A method that
    trains on the same trajectory batches with another image loss subclasses it (methods/mixture.py)."""

    Objective = ConsistencyObjective

    def __init__(self, acc, stage: StageEntry, dp: DistillParams, trajectories_dir: str | Path,
                 teacher_dir: str | Path | None = None, resume: Path | None = None):
        self.acc, self.dp, self.section = acc, dp, dp.method(stage.method)
        student = self.load_student((resume or Path(stage.init_dir)) / "model.safetensors").train()
        opt = torch.optim.AdamW(student.parameters(), lr=self.section.lr, weight_decay=dp.weight_decay)
        if resume is not None:
            opt.load_state_dict(read_torch_state(resume / "state.pt", CheckpointError)["optimizer"])
        self.objective, self.opt = acc.prepare(self.Objective(student, dp, self.section), opt)
        self.batches = TrajectoryBatches(trajectories_dir, stage, dp, student.config)

    def load_student(self, path: Path) -> ShowoModel:
        return load_model(path)

    def draw(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        return draw_batch(self.batches, self.section.batch_t2i, g)

    def step(self, step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        acc = self.acc
        set_lr(self.opt, warmup_lr(step, self.section.lr, self.dp.warmup_steps))
        batch = {k: v.to(acc.device) for k, v in self.draw(g).items()}
        with acc.autocast():
            losses = self.objective(batch)
        optimizer_update(acc, self.opt, self.objective, losses["total"], self.dp.grad_clip)
        return losses

    def student(self) -> ShowoModel:
        return self.acc.unwrap_model(self.objective).student

    def save(self, folder: Path) -> None:
        save_model(self.student(), folder / "model.safetensors")
        torch.save({"optimizer": self.opt.state_dict()}, folder / "state.pt")
