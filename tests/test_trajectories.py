"""Trajectory segmentation and the consistency targets kept per T2I trajectory."""

import pytest
import torch

from showo_turbo.model import ShowoModel
from showo_turbo.teacher import model_config_for
from showo_turbo.trajectories import collect_t2i_batch, segment_bounds, segment_ends


def test_segment_bounds_cover_the_steps():
    assert segment_bounds(16, 4) == [(0, 3), (4, 7), (8, 11), (12, 15)]
    assert segment_bounds(16, 1) == [(0, 15)]
    assert segment_bounds(10, 3) == [(0, 2), (3, 6), (7, 9)]
    for T in (1, 5, 16, 32):
        for S in range(1, T + 1):
            b = segment_bounds(T, S)
            assert b[0][0] == 0 and b[-1][1] == T - 1 and all(b[i][1] + 1 == b[i + 1][0] for i in range(S - 1))
    assert segment_ends(16, [4, 2, 1]) == [3, 7, 11, 15]
    with pytest.raises(ValueError, match=r"segments must be in \[1, 4\]"):
        segment_bounds(4, 5)


def test_t2i_targets_match_the_trajectory(micro_world):
    torch.manual_seed(0)
    model = ShowoModel(model_config_for(micro_world, "micro")).eval()
    t = micro_world.t2i_train()
    ends = segment_ends(8, [4, 2, 1])
    tg = collect_t2i_batch(model, t["caption"][:5].long(), t["caption_len"][:5].long(), steps=8, cfg_scale=2.0, ends=ends, top_k=8)
    assert (tg.commit_step <= 7).all() and tg.commit_step.min() == 0
    # Deterministic decoding commits the argmax of the distribution it stored at the commit step.
    assert torch.equal(tg.commit_index[..., 0].long(), tg.codes)
    p = tg.commit_probs.float()
    assert (p[..., :-1] >= p[..., 1:]).all() and (p.sum(-1) <= 1.01).all() and (p[..., 0] > 0).all()
    # Segment-end distributions exist exactly where the position was still masked at that step.
    for j, e in enumerate(ends):
        masked = tg.commit_step >= e
        assert (tg.end_probs[:, j].float().sum(-1) > 0).eq(masked).all()
    again = collect_t2i_batch(model, t["caption"][:5].long(), t["caption_len"][:5].long(), steps=8, cfg_scale=2.0, ends=ends, top_k=8)
    assert torch.equal(again.codes, tg.codes)  # deterministic
