"""The text side every distillation method shares, so that the student stays one model for images
and text: Show-o Turbo's Jacobi consistency loss (CLLM's global consistency) and the AR loss on the
teacher's fixed point, both from one packed forward, plus the LM loss on captions; and the
trajectory store's batches they read.

- text consistency: pick a Jacobi state x_i of a block and the last state x_e of its segment; the
  student's distributions on x_e (no gradient) are the targets for its distributions on x_i, at the
  block positions after the first token where x_i and x_e differ.
- AR: next-token cross-entropy on the teacher's greedy answer.
- total: w_img L_img + w_lm L_lm + w_text (L_text_consistency + ar_multiplier L_ar).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.showo import ShowoConfig, ShowoModel, additive, mmu_allowed, next_token_loss
from ..model.tokenization import pad_tokens
from ..pipeline.params import DistillParams, StageEntry
from ..training.trajectories import load_store, segment_bounds


def _real(prompt: torch.Tensor, pad_id: int) -> torch.Tensor:
    return prompt[(prompt != pad_id).long().cumsum(0) > 0]  # drop the left padding


def _right_pad(rows: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    return pad_tokens([r.tolist() for r in rows], max(len(r) for r in rows), pad_id)[0].long()


def text_targets(store: dict[str, torch.Tensor], rows: torch.Tensor, segments: int, cfg: ShowoConfig,
                 g: torch.Generator):
    """Jacobi consistency pairs and the AR answer for MMU rows `rows`, packed into one sequence per
    row so that the image prefix, question and answer are encoded once instead of three times:

        [prompt (no left pads)] [answer] [x_i] [x_e]       (right-padded)

    `allowed` [B, L, L] is the attention pattern that makes each part see what it would see as its
    own sequence: the plain MMU pattern (`model.mmu_allowed`: causal, image prefix bidirectional) for
    prompt + answer, and x_i and x_e each causal over the prompt, the answer's first j*n tokens (the
    earlier blocks' fixed points) and themselves; their position ids continue from there. So the packed forward gives the same hidden states as the three
    sequences `before + x_i`, `before + x_e` and `prompt + answer` would (tests/test_distill.py).

    Returns ids, allowed, position_ids [B, L]; pos_i / pos_e [B, n] (block token m of x_i / x_e is
    predicted at pos[m]: the last token before the block for m = 0, else block token m - 1);
    loss_mask [B, n] (counted when m > the first index where x_i and x_e differ); ar_target [B, L]
    (positions whose next token belongs to the answer, its <|eot|> included)."""
    n, pad_id = store["states"].shape[-1], cfg.layout.pad_id
    parts, meta = [], []
    for r in rows.tolist():
        prompt = _real(store["prompt"][r].long(), pad_id)
        n_states = store["n_states"][r].long()
        blocks = torch.nonzero(n_states > 0).flatten()
        j = int(blocks[torch.randint(0, len(blocks), (1,), generator=g)])
        s = int(n_states[j])
        i = int(torch.randint(0, s, (1,), generator=g))
        e = next(end for start, end in segment_bounds(s, min(segments, s)) if start <= i <= end)
        x_i, x_e = store["states"][r, j, i].long(), store["states"][r, j, e].long()
        a_len = int(store["answer_len"][r])
        answer = store["answer"][r, :max(a_len, j * n)].long()  # covers the earlier blocks too
        parts.append(torch.cat([prompt, answer, x_i, x_e]))
        diff = torch.nonzero(x_i != x_e).flatten()
        d = int(diff[0]) if len(diff) else n
        meta.append((len(prompt), a_len, len(answer), len(prompt) + j * n, d))
    ids = _right_pad(parts, pad_id)
    B, L = ids.shape
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    allowed = mmu_allowed(ids, cfg)  # right for prompt + answer; the x rows are redrawn below
    position_ids = torch.zeros(B, L, dtype=torch.long)
    pos_i, pos_e = torch.empty(B, n, dtype=torch.long), torch.empty(B, n, dtype=torch.long)
    ar_target = torch.zeros(B, L, dtype=torch.bool)
    m = torch.arange(n)
    for b, (p, a_len, a_full, before, d) in enumerate(meta):
        main = p + a_full
        for x0 in (main, main + n):  # x_i, then x_e
            allowed[b, x0:x0 + n] = False
            allowed[b, x0:x0 + n, :before] = True
            allowed[b, x0:x0 + n, x0:x0 + n] = causal[:n, :n]
            position_ids[b, x0:x0 + n] = before + m
        position_ids[b, :main] = torch.arange(main)
        pos_i[b] = torch.where(m == 0, before - 1, main + m - 1)
        pos_e[b] = torch.where(m == 0, before - 1, main + n + m - 1)
        ar_target[b, p - 1:p + a_len - 1] = True
    loss_mask = (m.view(1, n) > torch.tensor([x[-1] for x in meta]).view(B, 1)) & (m.view(1, n) >= 1)
    return {"mmu_ids": ids, "mmu_allowed": allowed, "mmu_position_ids": position_ids, "pos_i": pos_i, "pos_e": pos_e,
            "loss_mask": loss_mask, "ar_target": ar_target}


# --------------------------------------------------------------------------------------------
# The objective: every loss in one forward (so DDP sees one forward per step).


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row -sum_k p_k log q(index_k); without `index`, `probs` is over the whole last dimension."""
    logq = logits.float().log_softmax(-1)
    if index is not None:
        logq = logq.gather(-1, index)
    return -(probs * logq).sum(-1)


def _rows_at(h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """h [B, L, D] at positions pos [B, n] -> [B, n, D]."""
    return h.gather(1, pos.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


def text_losses(m: ShowoModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text side of every stage, from `text_targets`' packed rows: the Jacobi consistency loss
    (x_i's predictions move towards the detached predictions on x_e) and the AR loss on the teacher's
    fixed point, both from one forward."""
    h = m.hidden(batch["mmu_ids"], additive(batch["mmu_allowed"]), batch["mmu_position_ids"])
    target = m.logits(_rows_at(h, batch["pos_e"])).float().softmax(-1).detach()
    pred = m.logits(_rows_at(h, batch["pos_i"]))
    mask = batch["loss_mask"].float()
    return {"consistency": (soft_cross_entropy(pred, target) * mask).sum() / mask.sum().clamp(min=1),
            "ar": next_token_loss(m, h, batch["mmu_ids"], batch["ar_target"])}


def total_loss(out: dict[str, torch.Tensor], dp: DistillParams) -> torch.Tensor:
    """w_img L_img + w_lm L_lm + w_text (L_text_consistency + ar_multiplier L_ar)."""
    return (dp.weight_image * out["image"] + dp.weight_lm * out["lm"]
            + dp.weight_text * (out["consistency"] + dp.ar_multiplier * out["ar"]))


class TrajectoryBatches:
    """The trajectory store (data/trajectories: t2i and mmu) and the text batches drawn from it on the CPU."""

    def __init__(self, trajectories_dir: str | Path, stage: StageEntry, dp: DistillParams, cfg: ShowoConfig):
        root = Path(trajectories_dir)
        self.t2i, self.mmu = load_store(root / "t2i", "t2i"), load_store(root / "mmu", "mmu")
        self.usable = torch.nonzero(~self.mmu["repetitive"].bool() & (self.mmu["answer_len"] > 0)).flatten()
        if not len(self.t2i.get("codes", [])) or not len(self.usable):
            raise ValueError(f"{root}: no trajectories to distill from")
        self.stage, self.dp, self.cfg = stage, dp, cfg

    def draw_text(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        """`batch_mmu` packed Jacobi rows (`text_targets`)."""
        mmu_rows = self.usable[torch.randint(0, len(self.usable), (self.dp.batch_mmu,), generator=g)]
        return text_targets(self.mmu, mmu_rows, self.stage.segments, self.cfg, g)
