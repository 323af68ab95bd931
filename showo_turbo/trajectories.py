"""Teacher trajectories for consistency distillation (DESIGN.md 1.1, "Trajectory collection").

T2I: the teacher samples each training caption with CFG over T MaskGIT steps, deterministically
(argmax, no Gumbel noise, as in the paper) or stochastically (several seeded samples per caption).
Per prompt the store keeps the final codes and the step at which each position was committed
(every intermediate state follows: position i is masked before step k iff commit_step[i] >= k),
plus the teacher's top-k CFG distribution at the steps a consistency target can point to: each
position's commit step, and every segment end of every curriculum stage.

MMU: greedy Jacobi decoding of the training questions; per question the states of every block
(padded) and the number of states per block; the fixed point is the last state.

Both are written as checksummed shards (`shards.py`) and the collection resumes after the last
complete shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import ShowoModel
from .sampling import T2IResult, t2i_generate


def segment_bounds(steps: int, segments: int) -> list[tuple[int, int]]:
    """Split steps 0..T-1 into `segments` contiguous, near-equal [start, end] ranges (inclusive)."""
    if not 1 <= segments <= steps:
        raise ValueError(f"segments must be in [1, {steps}], got {segments}")
    edges = [round(i * steps / segments) for i in range(segments + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(segments)]


def segment_ends(steps: int, curriculum: list[int]) -> list[int]:
    """Every segment end of every stage of the curriculum (sorted, unique)."""
    return sorted({e for s in curriculum for _, e in segment_bounds(steps, s)})


@dataclass
class T2ITargets:
    """Distributions kept for one batch: at each position's commit step, and at each segment end."""

    codes: torch.Tensor          # [B, N] final codes
    commit_step: torch.Tensor    # [B, N]
    commit_probs: torch.Tensor   # [B, N, k] float16
    commit_index: torch.Tensor   # [B, N, k] int16
    end_probs: torch.Tensor      # [B, E, N, k] (zeros where the position was not masked at that end)
    end_index: torch.Tensor      # [B, E, N, k]


def targets_from_result(result: T2IResult, ends: list[int]) -> T2ITargets:
    tr = result.trajectory
    T, B, N, k = tr.top_probs.shape
    commit = tr.commit_step
    pick = commit.view(1, B, N, 1).expand(1, B, N, k)
    commit_probs = tr.top_probs.gather(0, pick)[0]
    commit_index = tr.top_indices.gather(0, pick)[0]
    masked_at = torch.stack([commit >= e for e in ends], 1)  # masked before step e
    end_probs = tr.top_probs[ends].permute(1, 0, 2, 3) * masked_at.unsqueeze(-1)
    end_index = tr.top_indices[ends].permute(1, 0, 2, 3) * masked_at.unsqueeze(-1)
    return T2ITargets(result.codes, commit, commit_probs, commit_index, end_probs.half(), end_index)


@torch.no_grad()
def collect_t2i_batch(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, steps: int, cfg_scale: float,
                      ends: list[int], deterministic: bool = True, top_k: int = 16,
                      generator: torch.Generator | None = None) -> T2ITargets:
    """One batch of teacher trajectories (Show-o's trajectory code keeps the last token masked only
    with min_remask=0, so every position is committed inside the T steps)."""
    kw = dict(sample="argmax", temperature=0.0) if deterministic else dict(sample="multinomial", temperature=1.0)
    res = t2i_generate(model, captions, caption_len, steps=steps, cfg_scale=cfg_scale, min_remask=0,
                       return_trajectory=True, trajectory_top_k=top_k, generator=generator, **kw)
    return targets_from_result(res, ends)

