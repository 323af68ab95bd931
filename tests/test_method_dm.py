"""Noise-input distribution matching (`method: dm`): the student's initial state, the sampler from it,
the generator's gradient, the auxiliary model's targets, resume, and two processes."""

import math
from pathlib import Path

import pytest
import torch

import showo_turbo.methods.dm as dmod
from showo_turbo.methods.dm import DMObjective, Training, student_rollout
from showo_turbo.model.sampling import noisy_initial_state, remask, t2i_generate, tokens_to_remask
from showo_turbo.model.showo import CheckpointError, ShowoModel, load_model, omni_attention_mask, save_model, t2i_sequences
from showo_turbo.pipeline.params import StageEntry, replace
from showo_turbo.training.distill import distill_stage
from showo_turbo.training.teacher import model_config_for
from two_processes import distill_two_processes

DM = StageEntry(method="dm", segments=1, init_dir="data/teacher", arm=None)


def sample_codes(logits, g):
    """One code per position from softmax(logits), as the sampler draws it."""
    probs = logits.detach().float().cpu().softmax(-1)
    return torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=g).view(probs.shape[:-1])


def with_dm(dp, **changes):
    """`dp` with its dm section changed."""
    return replace(dp, dm=replace(dp.method("dm"), **changes))


@pytest.fixture(scope="module")
def workdir(make_distill_workdir):
    """data/teacher (a random micro teacher) and its trajectories."""
    return make_distill_workdir("dm", seed=1)


def test_noisy_initial_state_has_the_mask_fraction_and_valid_codes():
    g = torch.Generator().manual_seed(0)
    for ratio in (0.0, 0.25, 0.6, 1.0):
        s = noisy_initial_state(64, 50, 209, ratio, g)
        assert ((s == -1).sum(1) == round(50 * ratio)).all()
        codes = s[s >= 0]
        assert ((codes >= 0) & (codes < 209)).all() and ((s >= -1)).all()
    s = noisy_initial_state(64, 50, 209, 0.6, g)
    assert len({tuple(r.tolist()) for r in (s == -1)}) > 1  # masked positions differ per row
    assert len(torch.unique(s[s >= 0])) > 150  # random codes cover the codebook, not one value
    with pytest.raises(ValueError, match="mask_ratio"):
        noisy_initial_state(1, 4, 8, 1.5)


def test_sampler_from_the_noisy_start_follows_the_schedule(micro_world):
    torch.manual_seed(0)
    model = ShowoModel(model_config_for(micro_world, "micro")).eval()
    cfg = model.config
    N, B = cfg.num_image_tokens, 6
    caps = torch.randint(0, 10, (B, 5))
    lens = torch.full((B,), 5)
    for steps in (1, 2, 4):
        r = t2i_generate(model, caps, lens, steps=steps, generator=torch.Generator().manual_seed(3), return_trajectory=True,
                         init_mask_ratio=0.6)
        start = r.trajectory.states[0]
        assert ((start == -1).sum(1) == round(N * 0.6)).all() and (start >= 0).any()  # the noisy state is step 0
        unknown = torch.full((B,), N)
        for k in range(steps):  # after the first pass the usual cosine re-masking
            n = tokens_to_remask(k, steps, N, unknown)
            assert torch.equal((r.trajectory.states[k + 1] == -1).sum(1), n)
            unknown = n
        assert ((r.codes >= 0) & (r.codes < cfg.codebook_size)).all()
        # the first pass replaced the random codes too (it is not a fill-in of the masked positions)
        assert (r.codes[start >= 0] != start[start >= 0]).float().mean() > 0.5
    a = t2i_generate(model, caps, lens, steps=2, generator=torch.Generator().manual_seed(3), init_mask_ratio=0.6)
    b = t2i_generate(model, caps, lens, steps=2, generator=torch.Generator().manual_seed(4), init_mask_ratio=0.6)
    assert not torch.equal(a.codes, b.codes)


def test_student_rollout_is_the_samplers_walk_with_each_positions_deciding_logits(micro_world):
    """The training rollout draws what `t2i_generate` draws from the same noisy start and seed, and
    each position carries the logits of the pass that fixed it (its commit step in the sampler's
    trajectory), with the graph back to the model."""
    torch.manual_seed(0)
    model = ShowoModel(model_config_for(micro_world, "micro")).eval()
    cfg = model.config
    N, B = cfg.num_image_tokens, 6
    caps, lens = torch.randint(0, 10, (B, 5)), torch.tensor([5, 3, 4, 5, 2, 5])
    for steps in (1, 2, 4):
        ref = t2i_generate(model, caps, lens, steps=steps, generator=torch.Generator().manual_seed(3), init_mask_ratio=0.6,
                           temperature=4.5, return_trajectory=True, prompt_cache=False)
        g = torch.Generator().manual_seed(3)
        start = noisy_initial_state(B, N, cfg.codebook_size, 0.6, g)
        codes, logits = student_rollout(model, caps, lens, start, steps, 4.5, generator=g)
        assert torch.equal(start, ref.trajectory.states[0]) and torch.equal(codes, ref.codes)
        assert logits.requires_grad and logits.shape == (B, N, cfg.codebook_size)
        for k in range(steps):  # the pass-k logits, recomputed from the sampler's state before step k
            state = ref.trajectory.states[k]
            ids = t2i_sequences(caps, lens, torch.where(state < 0, cfg.layout.mask_id, state + cfg.layout.code_offset), cfg)
            with torch.no_grad():
                pass_k = model.image_logits(ids)
            here = ref.trajectory.commit_step == k
            assert here.any()
            assert torch.allclose(logits.detach()[here], pass_k[here], atol=1e-5)
            if steps > 1:
                assert not torch.allclose(logits.detach()[~here], pass_k[~here], atol=1e-3)
    with pytest.raises(ValueError, match="steps"):
        student_rollout(model, caps, lens, start, 0, 4.5)


def test_generator_gradient_is_p_aux_minus_p_teacher_at_masked_positions(micro_world, micro_params, monkeypatch):
    """The logit gradient of the surrogate, recomputed independently: the same random draws, the
    teacher's CFG and the auxiliary model's distributions from plain forwards, divided by the number
    of masked positions."""
    cfg_m = model_config_for(micro_world, "micro")
    torch.manual_seed(0)
    student, teacher, aux = (ShowoModel(cfg_m).eval() for _ in range(3))
    dp = with_dm(replace(micro_params.distill, weight_lm=0.0, weight_text=0.0, weight_image=1.0), teacher_cfg_scale=2.0,
                 train_steps=[1])
    lay, N, B = cfg_m.layout, cfg_m.num_image_tokens, 5
    caps, lens = torch.randint(0, 10, (B, 5)), torch.tensor([5, 3, 4, 5, 2])
    start = noisy_initial_state(B, N, cfg_m.codebook_size, 0.6, torch.Generator().manual_seed(1))
    monkeypatch.setattr(dmod, "text_losses", lambda m, b: {"consistency": torch.zeros(()), "ar": torch.zeros(())})
    objective = DMObjective(student, teacher, aux, dp)
    kept = {}
    original = student.image_logits

    def keep(*a, **k):
        kept["logits"] = original(*a, **k)
        kept["logits"].retain_grad()
        return kept["logits"]

    student.image_logits = keep
    # the text losses are switched off (above), so the batch holds the image side only
    out = objective({"caption": caps, "caption_len": lens, "start": start, "steps": torch.tensor(1)},
                    torch.Generator().manual_seed(7))
    out["image"].backward()
    grad = kept["logits"].grad
    # Independently: the same draws (sample, then re-mask), then the two models' distributions.
    g = torch.Generator().manual_seed(7)
    x_t, masked = remask(sample_codes(kept["logits"], g), g)
    ids = lambda c, n: t2i_sequences(c, n, torch.where(x_t < 0, lay.mask_id, x_t + lay.code_offset), cfg_m)
    with torch.no_grad():
        cond = teacher.image_logits(ids(caps, lens), omni_attention_mask(ids(caps, lens), cfg_m))
        empty = ids(caps[:, :0], torch.zeros(B, dtype=torch.long))
        uncond = teacher.image_logits(empty, omni_attention_mask(empty, cfg_m))
        p_t = (3.0 * cond - 2.0 * uncond).softmax(-1)
        p_a = aux.image_logits(ids(caps, lens)).softmax(-1)
    expected = torch.where(masked.unsqueeze(-1), p_a - p_t, 0.0) / masked.sum()
    assert masked.any() and (~masked).any()
    assert torch.allclose(grad, expected, atol=1e-6)
    assert (grad[~masked] == 0).all() and grad[masked].abs().sum() > 1e-3


def test_auxiliary_model_learns_the_generators_samples_not_the_teachers(workdir, micro_params, monkeypatch):
    """A generator that always draws one code c*: the auxiliary model's targets are c*, and after
    its updates it gives c* far more probability than the teacher does."""
    from accelerate import Accelerator
    monkeypatch.chdir(workdir)
    teacher = load_model(workdir / "data" / "teacher" / "model.safetensors")
    lay, c_star = teacher.config.layout, 5
    biased = load_model(workdir / "data" / "teacher" / "model.safetensors")
    with torch.no_grad():
        biased.showo.lm_head.bias[lay.code_offset + c_star] += 60.0
    (workdir / "data" / "biased").mkdir(exist_ok=True)
    save_model(biased, workdir / "data" / "biased" / "model.safetensors")
    dp = with_dm(replace(micro_params.distill, warmup_steps=0), lr=0.0, aux_lr=3e-3, aux_updates=4)
    stage = replace(DM, init_dir="data/biased")
    tr = Training(Accelerator(cpu=True), stage, dp, "data/trajectories", "data/teacher")
    g = torch.Generator().manual_seed(0)
    ab = tr._aux_batch(g)
    assert (ab["target"] == c_star).all()  # the generator's own samples are the targets

    def p_star(model):
        with torch.no_grad():
            return model.image_logits(ab["ids"]).softmax(-1)[..., c_star][ab["masked"]].mean().item()

    before = p_star(tr.aux)
    for step in range(3):
        tr.step(step, torch.Generator().manual_seed(step + 1))
    after, teacher_p = p_star(tr.aux), p_star(teacher)
    assert abs(before - teacher_p) < 1e-6  # the auxiliary model started as the teacher
    # Trained on the teacher's samples, c* would stay near the teacher's ~1/codebook; here it grows tenfold.
    print(f"p(c*): teacher {teacher_p:.4f}, auxiliary before {before:.4f}, after 12 updates {after:.4f}")
    assert after > 10 * teacher_p


def test_dm_stage_resumes_bit_identically(workdir, micro_params, monkeypatch):
    monkeypatch.chdir(workdir)
    dp = micro_params.distill
    assert max(dp.method("dm").train_steps) > 1  # the micro params exercise multi-step rollouts
    full = distill_stage(DM, dp, "data/trajectories", workdir / "full", cpu=True, progress=False)
    assert full["step"] == dp.method("dm").steps
    assert {"image", "aux", "tv_aux_teacher", "lm", "consistency", "ar", "total"} == set(full["losses"]["process_0"])
    part = distill_stage(DM, dp, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=3)
    assert part["step"] == 3 and not (workdir / "part" / "model.safetensors").is_file()
    resumed = distill_stage(DM, dp, "data/trajectories", workdir / "part", cpu=True, progress=False)
    assert resumed["resumed_from"] == 3 and resumed["step"] == dp.method("dm").steps
    for name in ("model.safetensors", "checkpoint/model.safetensors", "checkpoint/aux.safetensors"):
        a = load_model(workdir / "full" / name).state_dict()
        b = load_model(workdir / "part" / name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    t = load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()
    final = load_model(workdir / "full" / "model.safetensors").state_dict()
    assert any(not torch.equal(final[k], t[k]) for k in t)
    # Another teacher: the checkpoint is refused by name, and replaced only when a restart is asked.
    torch.manual_seed(5)
    (workdir / "data" / "teacher2").mkdir(exist_ok=True)
    save_model(ShowoModel(load_model(workdir / "data" / "teacher" / "model.safetensors").config),
               workdir / "data" / "teacher2" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"part/checkpoint: .*inputs.teacher_sha256"):
        distill_stage(DM, dp, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=2,
                      teacher_dir="data/teacher2")
    other = distill_stage(DM, dp, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=2,
                          teacher_dir="data/teacher2", restart=True)
    assert other["resumed_from"] == 0


@pytest.mark.slow
def test_dm_stage_two_processes_stay_in_sync(workdir):
    r = distill_two_processes(workdir, Path(__file__).resolve().parents[1] / "params" / "micro.yaml", "dm", "two_dm")
    assert r["processes"] == 2 and r["step"] == 6
    for losses in r["losses"].values():
        assert {"image", "aux", "total"} <= set(losses) and all(math.isfinite(v) for v in losses.values())
    assert r["losses"]["process_0"] != r["losses"]["process_1"]  # own batches ...
    assert r["weight_checksums"][0] == r["weight_checksums"][1]  # ... one set of weights
    a = load_model(workdir / "two_dm" / "checkpoint" / "aux.safetensors").state_dict()
    t = load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()
    assert any(not torch.equal(a[k], t[k]) for k in t)  # the auxiliary model trained too
