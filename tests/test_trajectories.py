"""Trajectory segmentation, the T2I and MMU trajectory stores, and resuming a collection."""

from showo_turbo.pipeline.params import replace

import pytest
import torch

from showo_turbo.model.showo import ShowoModel
from showo_turbo.pipeline.params import ParamsError, load_params, parse_params, to_dict
from showo_turbo.model.sampling import ar_generate
from showo_turbo.pipeline.shards import ShardReader, ShardWriter
from showo_turbo.training.teacher import model_config_for
from showo_turbo.training.trajectories import (collect_mmu, collect_t2i, collect_t2i_batch, has_repetition, model_sha256,
                                      segment_bounds, segment_ends, state_at, training_captions)


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


@pytest.fixture(scope="module")
def teacher(micro_world):
    torch.manual_seed(0)
    return ShowoModel(model_config_for(micro_world, "micro")).eval()


def test_t2i_batch_matches_the_sampler_trajectory(micro_world, teacher):
    t = micro_world.t2i_train()
    caps, lens = t["caption"][:5].long(), t["caption_len"][:5].long()
    rows = collect_t2i_batch(teacher, caps, lens, steps=8, cfg_scale=2.0, top_k=8)
    codes, commit = rows["codes"].long(), rows["commit_step"].long()
    assert rows["probs"].shape == (5, 8, micro_world.vq.grid_shape[0] * micro_world.vq.grid_shape[1], 8)
    assert (commit <= 7).all() and commit.min() == 0
    # Deterministic decoding commits the argmax of the distribution at the commit step.
    at_commit = rows["index"].long().gather(1, commit.view(5, 1, -1, 1).expand(-1, 1, -1, 8))[:, 0, :, 0]
    assert torch.equal(at_commit, codes)
    p = rows["probs"].float()
    assert (p[..., :-1] >= p[..., 1:]).all() and (p.sum(-1) <= 1.01).all()
    # States rebuilt from commit steps: all masked at step 0, none after the last step, monotone.
    assert (state_at(codes, commit, 0) == -1).all() and (state_at(codes, commit, 8) == codes).all()
    for k in range(8):
        assert ((state_at(codes, commit, k) == -1).sum(1) >= (state_at(codes, commit, k + 1) == -1).sum(1)).all()
    again = collect_t2i_batch(teacher, caps, lens, steps=8, cfg_scale=2.0, top_k=8)
    assert torch.equal(again["codes"], rows["codes"])  # deterministic


def _confidence_ordered(rows: dict[str, torch.Tensor], steps: int) -> bool:
    """Whether every step committed the positions whose argmax was most probable among those still open."""
    commit, top = rows["commit_step"].long(), rows["probs"].float()[..., 0]  # [B, N], [B, T, N]
    for k in range(steps - 1):
        open_k = commit >= k
        now, later = open_k & (commit == k), open_k & (commit > k)
        lo = torch.where(now, top[:, k], torch.inf).min(1).values
        hi = torch.where(later, top[:, k], -torch.inf).max(1).values
        if (lo < hi).any():
            return False
    return True


def _all(reader: ShardReader) -> dict[str, torch.Tensor]:
    parts = list(reader)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def test_t2i_store_and_resume(micro_world, micro_params, teacher, tmp_path):
    tp = replace(micro_params.trajectories, captions=20, shard_rows=8, batch_size=3, steps=4)
    full = collect_t2i(teacher, micro_world, tp, tmp_path / "full", progress=False)
    m = full.manifest
    assert m["counts"]["rows"] == 20 and m["counts"]["shards"] == 3 and m["counts"]["complete"]
    assert m["params"]["trajectories"] == to_dict(tp) and m["params"]["teacher_sha256"] == model_sha256(teacher)
    data = _all(full)
    assert len(torch.unique(torch.cat([data["caption"], data["caption_len"].view(-1, 1)], 1), dim=0)) == 20
    # An interrupted run (one shard written, no 'complete') resumes and ends equal to the full one.
    part = ShardWriter(tmp_path / "part", "t2i", m["params"])
    part.append(full.load(0))
    with pytest.raises(Exception, match="incomplete"):
        ShardReader(tmp_path / "part", "t2i")
    first = (tmp_path / "part" / "shard-00000.safetensors").stat().st_mtime_ns
    resumed = collect_t2i(teacher, micro_world, tp, tmp_path / "part", progress=False)
    assert (tmp_path / "part" / "shard-00000.safetensors").stat().st_mtime_ns == first
    for k, v in _all(resumed).items():
        assert torch.equal(v, data[k]), k
    # Another teacher's store is not resumed into.
    other = ShowoModel(teacher.config)
    with pytest.raises(Exception, match="other params"):
        collect_t2i(other, micro_world, tp, tmp_path / "full", progress=False)


def test_stochastic_trajectories_differ_per_sample(micro_world, micro_params, teacher, tmp_path):
    tp = replace(micro_params.trajectories, captions=4, samples_per_caption=3, decoding="stochastic", steps=4)
    data = _all(collect_t2i(teacher, micro_world, tp, tmp_path, progress=False))
    assert len(data["codes"]) == 12
    assert torch.equal(data["caption"][0], data["caption"][2]) and not torch.equal(data["caption"][0], data["caption"][3])
    assert not torch.equal(data["codes"][0], data["codes"][1])


def test_mmu_fixed_points_equal_greedy_ar(micro_world, micro_params, teacher, tmp_path):
    tp = replace(micro_params.trajectories, mmu_questions=20, shard_rows=8, batch_size=6, block_size=3)
    data = _all(collect_mmu(teacher, micro_world, tp, tmp_path, progress=False))
    n = tp.block_size
    ar = ar_generate(teacher, data["prompt"].long(), max_new_tokens=micro_world.summary["lengths"]["answer"] + 1)
    for b in range(20):
        want = ar.tokens[b]
        assert data["answer"][b, :len(want)].tolist() == want and int(data["answer_len"][b]) == len(want)
        for j in range(data["n_states"].shape[1]):
            s = int(data["n_states"][b, j])
            block = data["states"][b, j]
            if j * n < len(want):
                assert s >= 1 and block[s - 1].tolist()[: len(want) - j * n] == want[j * n:(j + 1) * n]
                # The initial guess is drawn from the prompt's own tokens.
                assert set(block[0].tolist()) <= set(data["prompt"][b].tolist())
            else:
                assert s == 0
    assert not data["repetitive"].any()


def test_repetition_filter_and_params():
    assert has_repetition([5] * 10) and not has_repetition([5] * 9 + [6] + [5] * 9)
    base = to_dict(load_params("params/micro.yaml"))
    bad = {**base, "trajectories": {**base["trajectories"], "samples_per_caption": 2}}
    with pytest.raises(ParamsError, match="trajectories.samples_per_caption: deterministic decoding"):
        parse_params(bad)


def test_training_captions_are_distinct_and_seeded(micro_world):
    a, la = training_captions(micro_world, 10, seed=0)
    b, _ = training_captions(micro_world, 10, seed=0)
    assert torch.equal(a, b) and len(torch.unique(a, dim=0)) == 10
    with pytest.raises(ValueError, match="trajectories.captions"):
        training_captions(micro_world, 10**6, seed=0)


def test_bf16_collection_writes_both_stores(micro_world, micro_params, teacher, tmp_path):
    """trajectories.precision: bf16 runs the teacher's forward passes under CPU autocast; the stores
    keep their dtypes and the probabilities stay valid."""
    tp = replace(micro_params.trajectories, captions=6, mmu_questions=4, batch_size=3, shard_rows=6, steps=4,
                 precision="bf16")
    t2i = _all(collect_t2i(teacher, micro_world, tp, tmp_path / "t2i", progress=False))
    assert t2i["probs"].dtype == torch.float16 and torch.isfinite(t2i["probs"].float()).all()
    assert (t2i["probs"].float().sum(-1) <= 1.01).all() and t2i["commit_step"].max() == 3
    mmu = _all(collect_mmu(teacher, micro_world, tp, tmp_path / "mmu", progress=False))
    assert len(mmu["answer_len"]) == 4 and (mmu["n_states"][:, 0] >= 1).all()
