"""Samplers against independent expectations: the mask schedule, CFG algebra, AR without a cache,
and Jacobi == AR token for token."""

import copy
import math

import pytest
import torch

from showo_turbo.model.showo import ShowoModel, additive, mmu_attention_mask, mmu_position_ids, mmu_prefix
from showo_turbo.model.sampling import (ar_generate, gumbel_noise, guided_logits, initial_guess, jacobi_generate, left_pad,
                                  t2i_generate)
from showo_turbo.training.teacher import model_config_for


@pytest.fixture(scope="module")
def model(micro_world):
    torch.manual_seed(0)
    return ShowoModel(model_config_for(micro_world, "micro")).eval()


@pytest.fixture(scope="module")
def captions(micro_world):
    t = micro_world.t2i_train()
    return t["caption"][:6], t["caption_len"][:6]


@pytest.fixture(scope="module")
def prompts(micro_world, model):
    """200 held-out-style MMU prompts: prefix + question."""
    m, cfg = micro_world.mmu_train(), model.config
    out = []
    for i in range(200):
        prefix = mmu_prefix(m["codes"][i].view(1, -1).long() + cfg.layout.code_offset, cfg)[0]
        out.append(torch.cat([prefix, m["question"][i, : m["question_len"][i]].long()]))
    return out


def expected_masked_counts(N: int, T: int, min_remask: int = 1) -> list[int]:
    """Masked positions after each step, straight from the schedule in docs/method.md, section 3."""
    unknown, out = N, []
    for k in range(T):
        n = math.floor(N * math.cos((k + 1) / T * math.pi / 2))
        n = max(min_remask, min(unknown - 1, n))
        n = min(n, unknown)
        out.append(n)
        unknown = n
    return out


@pytest.mark.parametrize("steps", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("min_remask", [1, 0])
def test_t2i_commits_what_the_schedule_says(model, captions, steps, min_remask):
    r = t2i_generate(model, *captions, steps=steps, cfg_scale=2.0, min_remask=min_remask, return_trajectory=True,
                     generator=torch.Generator().manual_seed(0))
    tr, N = r.trajectory, model.config.num_image_tokens
    masked = [(tr.states[k + 1] < 0).sum(-1).tolist() for k in range(steps)]
    assert masked == [[m] * 6 for m in expected_masked_counts(N, steps, min_remask)]
    assert (tr.states[0] < 0).all() and r.forwards == steps
    # A position is masked before step k exactly when its commit step is >= k.
    for k in range(steps + 1):
        assert torch.equal(tr.states[k] < 0, tr.commit_step >= k) or k == steps
    # Committed tokens never change, and the result agrees with every committed state.
    final = tr.states[-1]
    assert torch.equal(r.codes[final >= 0], final[final >= 0])
    assert (r.codes >= 0).all() and (r.codes < model.config.codebook_size).all()
    assert tr.top_probs.shape == (steps, 6, N, 16)


def test_gumbel_noise_is_finite():
    g = gumbel_noise((1_000_000,), torch.Generator().manual_seed(0))
    assert torch.isfinite(g).all()


def test_cfg_scale_zero_is_the_conditional_path_and_cfg_algebra_holds(model, captions):
    cfg = model.config
    image = torch.full((6, cfg.num_image_tokens), cfg.layout.mask_id)
    plain = guided_logits(model, *captions, image, 0.0)
    from showo_turbo.model.showo import omni_attention_mask, t2i_sequences
    ids = t2i_sequences(*captions, image, cfg)
    assert torch.equal(plain, model.image_logits(ids, omni_attention_mask(ids, cfg)).float())
    uncond_ids = t2i_sequences(captions[0][:, :0], torch.zeros(6, dtype=torch.long), image, cfg)
    uncond = model.image_logits(uncond_ids, omni_attention_mask(uncond_ids, cfg)).float()
    assert torch.allclose(guided_logits(model, *captions, image, 3.0), 4 * plain - 3 * uncond, atol=1e-4)


@pytest.mark.parametrize("cfg_scale", [0.0, 2.0])
def test_the_prompt_cache_gives_the_full_pass_logits(model, captions, cfg_scale):
    """Caption keys/values computed once, only the image block run per step == the whole sequence."""
    from showo_turbo.model.showo import CaptionCache
    from showo_turbo.model.sampling import caption_ids
    cfg, (caps, lens) = model.config, captions
    lens = lens.clone()
    lens[0] = 0  # an empty caption among them (mostly pads)
    cache = CaptionCache(model, caption_ids(caps, lens, cfg_scale, cfg))
    g = torch.Generator().manual_seed(3)
    for _ in range(3):  # the same cache, step after step, with different image states
        codes = torch.randint(-1, cfg.codebook_size, (6, cfg.num_image_tokens), generator=g)
        image = torch.where(codes < 0, cfg.layout.mask_id, codes + cfg.layout.code_offset)
        full = guided_logits(model, caps, lens, image, cfg_scale)
        cached = guided_logits(model, caps, lens, image, cfg_scale, cache)
        assert torch.allclose(cached, full, atol=1e-4, rtol=1e-4), (cached - full).abs().max()
        assert cache.cache.get_seq_length() == cfg.max_caption_tokens + 3  # cropped back after each step


def test_the_prompt_cached_sampler_draws_the_same_codes(model, captions):
    for kw in ({"sample": "argmax", "temperature": 0.0, "cfg_scale": 2.0},
               {"generator": torch.Generator().manual_seed(2), "cfg_scale": 1.0},
               {"generator": torch.Generator().manual_seed(2), "init_mask_ratio": 0.6}):
        g0 = kw.get("generator")
        runs = []
        for cached in (False, True):
            if g0 is not None:
                kw["generator"] = torch.Generator().manual_seed(2)
            runs.append(t2i_generate(model, *captions, steps=4, prompt_cache=cached, **kw).codes)
        assert torch.equal(runs[0], runs[1])


def test_top_k_1_makes_the_remasking_temperature_inert(model, captions):
    """With top-k 1 every confidence is log 1 = 0, so re-masking ranks Gumbel noise alone, whose order
    does not depend on its scale: any temperature > 0 commits the same positions in the same steps
    (the turbo_dm arm's sampler; studies/2026-12-07-trajectory-order). Without top-k it does matter."""
    sharp = copy.deepcopy(model)  # a random model's code distributions are near uniform: sharpen them so
    with torch.no_grad():         # that confidences differ by more than the Gumbel noise
        sharp.showo.lm_head.weight.mul_(30.0)

    def run(top_k, temperature):
        return t2i_generate(sharp, *captions, steps=4, top_k=top_k, temperature=temperature, init_mask_ratio=0.6,
                            generator=torch.Generator().manual_seed(3), return_trajectory=True)
    a, b = run(1, 4.5), run(1, 20.0)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.trajectory.commit_step, b.trajectory.commit_step)
    c, d = run(None, 4.5), run(None, 20.0)
    assert not torch.equal(c.trajectory.commit_step, d.trajectory.commit_step)


def test_t2i_is_seeded_and_batch_independent(model, captions):
    a = t2i_generate(model, *captions, steps=4, generator=torch.Generator().manual_seed(1)).codes
    b = t2i_generate(model, *captions, steps=4, generator=torch.Generator().manual_seed(1)).codes
    assert torch.equal(a, b)
    det = t2i_generate(model, *captions, steps=4, sample="argmax", temperature=0.0, cfg_scale=1.5).codes
    one = [t2i_generate(model, captions[0][i:i + 1], captions[1][i:i + 1], steps=4, sample="argmax", temperature=0.0,
                        cfg_scale=1.5).codes for i in range(6)]
    assert torch.equal(det, torch.cat(one))


def test_ar_with_kv_cache_equals_full_recompute(model, prompts):
    cfg = model.config
    batch = left_pad(prompts[:8], cfg.layout.pad_id)
    got = ar_generate(model, batch, max_new_tokens=12).tokens
    for p, toks in zip(prompts[:8], got):
        seq, want = p.clone(), []
        for _ in range(12):
            L = len(seq)
            prefix_end = int((seq == cfg.layout.special_id("<|eoi|>")).nonzero()[0])
            allowed = torch.ones(L, L, dtype=torch.bool).tril()
            allowed[: prefix_end + 1, : prefix_end + 1] = True
            logits = model(seq.view(1, -1), additive(allowed.unsqueeze(0)))[0, -1]
            t = int(logits.argmax())
            want.append(t)
            if t == cfg.eot_id:
                break
            seq = torch.cat([seq, torch.tensor([t])])
        assert toks == want


@pytest.mark.parametrize("block", [1, 4, 16])
def test_jacobi_equals_ar_on_200_prompts(model, prompts, block):
    pad = model.config.layout.pad_id
    ar = ar_generate(model, left_pad(prompts, pad), max_new_tokens=24)
    jac = jacobi_generate(model, left_pad(prompts, pad), max_new_tokens=24, block_size=block,
                          generator=torch.Generator().manual_seed(0))
    assert jac.tokens == ar.tokens
    # every block needs a pass at least (the prefill runs the first block's first)
    assert all(f >= math.ceil(len(t) / block) for f, t in zip(jac.stats["row_forwards"], jac.tokens))


def test_jacobi_stop_modes(model, prompts):
    pad = model.config.layout.pad_id
    batch = left_pad(prompts[:20], pad)
    ar = ar_generate(model, batch, max_new_tokens=12)
    eot = jacobi_generate(model, batch, max_new_tokens=12, block_size=4, stop="eot")
    assert eot.tokens == ar.tokens
    with pytest.raises(ValueError, match="stop must be"):
        jacobi_generate(model, batch, stop="first")


def test_jacobi_batched_equals_unbatched(model, prompts):
    pad = model.config.layout.pad_id
    batched = jacobi_generate(model, left_pad(prompts[:10], pad), max_new_tokens=20, block_size=6)
    for i in range(10):
        one = jacobi_generate(model, prompts[i].view(1, -1), max_new_tokens=20, block_size=6)
        assert one.tokens[0] == batched.tokens[i]


def test_jacobi_trajectory_and_initial_guess(model, prompts):
    pad = model.config.layout.pad_id
    r = jacobi_generate(model, prompts[0].view(1, -1), max_new_tokens=8, block_size=8, return_trajectories=True,
                        generator=torch.Generator().manual_seed(0))
    traj = r.trajectories[0]  # [iterations + 1, 1, 8]
    assert set(traj[0, 0].tolist()) <= set(prompts[0].tolist())  # guess drawn from the prompt's tokens
    assert torch.equal(traj[-1], traj[-2])  # ends at a fixed point
    assert r.stats["iterations"][0][0] <= traj.shape[0] - 1
    g = initial_guess(left_pad(prompts[:2], pad), 5, "pad", pad, 10)
    assert (g == pad).all()
    with pytest.raises(ValueError, match="unknown initial guess"):
        initial_guess(left_pad(prompts[:2], pad), 5, "zeros", pad, 10)


def test_jacobi_states_equal_full_recompute_and_skip_the_final_prefix(model, prompts):
    """Each Jacobi state equals a pass of the whole sequence recomputed from scratch (no cache): the
    cached decoder, which keeps a prefix that a pass left unchanged and feeds only the rest, changes
    no state; the prefill runs the first pass, and the later passes feed fewer tokens than passes x block."""
    cfg, n = model.config, 8
    fed = []
    forward = model.showo.model.forward
    model.showo.model.forward = lambda *a, **kw: fed.append(kw["input_ids"].shape[1]) or forward(*a, **kw)
    try:
        r = jacobi_generate(model, prompts[1].view(1, -1), max_new_tokens=n, block_size=n, return_trajectories=True,
                            generator=torch.Generator().manual_seed(1))
    finally:
        model.showo.model.forward = forward
    states = r.trajectories[0][:, 0]
    P = len(prompts[1])
    for k in range(len(states) - 1):
        ids = torch.cat([prompts[1], states[k]]).view(1, -1)
        with torch.no_grad():
            logits = model(ids, mmu_attention_mask(ids, cfg), mmu_position_ids(ids, cfg))[0]
        assert torch.equal(logits[P - 1:P + n - 1].argmax(-1), states[k + 1])
    assert len(fed) == len(states) - 1 >= 3 and fed[0] == P + n  # the prefill carries the first pass
    assert sum(fed[1:]) < (len(fed) - 1) * n


def test_positions_of_left_padded_prompts(model, prompts):
    batch = left_pad(prompts[:3], model.config.layout.pad_id)
    pos = mmu_position_ids(batch, model.config)
    for i, p in enumerate(prompts[:3]):
        assert pos[i, -len(p):].tolist() == list(range(len(p)))
