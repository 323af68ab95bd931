"""What every training stage shares (the teacher's and each distillation stage's): the learning-rate
schedule, the optimizer update, the loop with its logging and checkpoints, and the resume rule.

The resume rule, one for all: a checkpoint is resumed when its recipe (params and inputs) matches
the run's; when it does not, the run is refused with one line naming the changed keys, and starts
over only when asked (`restart=True`, or SHOWO_TURBO_RESTART=1 in the environment of `dvc repro`).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..model.showo import CheckpointError
from ..pipeline.io import LossLog, load_json

RESTART_ENV = "SHOWO_TURBO_RESTART"


def warmup_lr(step: int, lr: float, warmup_steps: int, total_steps: int | None = None, min_lr_ratio: float = 1.0) -> float:
    """Linear warmup over `warmup_steps`, then constant (the official student's schedule) or, with
    `total_steps` and `min_lr_ratio` < 1, cosine decay to `min_lr_ratio * lr` (the teacher's)."""
    if step < warmup_steps or total_steps is None or min_lr_ratio == 1.0:
        return lr * min(1.0, (step + 1) / max(warmup_steps, 1))
    p = min((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def optimizer_update(acc, opt: torch.optim.Optimizer, module: torch.nn.Module, loss: torch.Tensor, grad_clip: float) -> None:
    """zero_grad, backward, clip, step; `acc` an accelerate.Accelerator, or None for plain torch."""
    opt.zero_grad(set_to_none=True)
    if acc is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    else:
        acc.backward(loss)
        acc.clip_grad_norm_(module.parameters(), grad_clip)
    opt.step()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_point(ckpt: Path, recipe: dict, budget: tuple[str, int] | None = None, restart: bool | None = None) -> dict | None:
    """The progress record of checkpoint folder `ckpt` when it can be resumed, None when there is
    none (or when it does not match and a restart was asked: the caller starts over).

    `recipe` is what the checkpoint must match (a JSON-like dict). `budget` = (dotted key, steps):
    a key of the recipe that may grow (a stage trained to N steps of a constant lr is the first N
    steps of a longer run), so that raising it resumes the finished run."""
    if not (ckpt / "progress.json").is_file():
        return None
    restart = os.environ.get(RESTART_ENV, "") not in ("", "0") if restart is None else restart
    prog = load_json(ckpt / "progress.json")
    have, want = _flat(prog.get("recipe", {})), _flat(recipe)
    if budget is not None:
        key, steps = budget
        if prog.get("step", 0) <= steps:
            have.pop(key, None)
            want.pop(key, None)
    changed = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
    if not changed:
        return prog
    if restart:
        return None
    shown = ", ".join(f"{k} {have.get(k)!r} -> {want.get(k)!r}" for k in changed[:4]) + (" ..." if len(changed) > 4 else "")
    raise CheckpointError(f"{ckpt}: this checkpoint was trained with another recipe ({shown}); restore it, "
                          f"or start over with {RESTART_ENV}=1 (or delete the folder)")


def start_over(ckpt: Path, history: Path) -> None:
    """Forget an earlier run (a restart, or nothing to resume): its checkpoint folder and loss history."""
    shutil.rmtree(ckpt, ignore_errors=True)
    history.unlink(missing_ok=True)


def train_steps(step: int, stop: int, total: int, update: Callable[[int], dict], log: LossLog,
                flush: Callable[[int], dict], checkpoint: Callable[[int], None], log_every: int,
                checkpoint_every: int, desc: str, progress: bool = True) -> int:
    """The loop: `update(step)` (one optimizer update, its losses) until `stop`, the losses' means
    flushed every `log_every` updates (`flush(step)` returns them for the progress bar) and a
    checkpoint every `checkpoint_every` and at the end. Returns the step reached."""
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress)
    while step < stop:
        losses = update(step)
        step += 1
        log.add(losses)
        bar.update()
        if step % log_every == 0 or step == stop:
            bar.set_postfix({k: f"{v:.3f}" for k, v in flush(step).items()})
        if step % checkpoint_every == 0 or step == stop:
            checkpoint(step)
    bar.close()
    return step
