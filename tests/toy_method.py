"""A toy distillation method for tests/test_methods.py: the plug-in interface of showo_turbo/methods
met by something other than the shipped methods. Its image loss is plain cross-entropy towards the
final codes of the teacher's trajectories from the all-[MASK] state (no segments); it logs `image`
and `total` only."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from showo_turbo.methods.consistency import Params  # noqa: F401  (the same section keys: steps, batch_t2i, lr)
from showo_turbo.methods.text import TrajectoryBatches
from showo_turbo.model.showo import image_state_ids, load_model, save_model, t2i_sequences
from showo_turbo.training.loop import optimizer_update, set_lr, warmup_lr

USES_TEACHER = False


def sampler_start(section: Params) -> dict:
    return {}


def scored_steps(eval_steps):
    return [1]


class Training:
    def __init__(self, acc, stage, dp, trajectories_dir, teacher_dir=None, resume: Path | None = None):
        self.acc, self.dp, self.section = acc, dp, dp.method(stage.method)
        self.model = load_model((resume or Path(stage.init_dir)) / "model.safetensors").train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.section.lr)
        self.batches = TrajectoryBatches(trajectories_dir, stage, dp, self.model.config)

    def step(self, step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        t2i, cfg = self.batches.t2i, self.model.config
        rows = torch.randint(0, len(t2i["codes"]), (self.section.batch_t2i,), generator=g)
        codes = t2i["codes"][rows].long()
        ids = t2i_sequences(t2i["caption"][rows].long(), t2i["caption_len"][rows].long(),
                            image_state_ids(torch.full_like(codes, -1), cfg), cfg)
        loss = F.cross_entropy(self.model.image_logits(ids).flatten(0, 1).float(), codes.flatten())
        set_lr(self.opt, warmup_lr(step, self.section.lr, self.dp.warmup_steps))
        optimizer_update(None, self.opt, self.model, loss, self.dp.grad_clip)
        return {"image": loss.detach(), "total": loss.detach()}

    def student(self):
        return self.model

    def save(self, folder: Path) -> None:
        save_model(self.model, folder / "model.safetensors")
