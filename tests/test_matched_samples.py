"""Matched teacher samples (`distill.dm.image_loss: matched`): the pairing's likelihoods and
assignment, the teacher's pool (its draws, resume, foreign files), and the stage (targets, resume)."""

import itertools
from dataclasses import replace

import pytest
import torch

from showo_turbo.distill import POOL_FILE, distill_stage
from showo_turbo.io import write_safetensors
from showo_turbo.matched_samples import (MatchedObjective, PoolError, assign_samples, pair_log_likelihood, pool_key,
                                         teacher_pool)
from showo_turbo.model import ShowoModel, load_model
from showo_turbo.params import CurriculumStage, ParamsError, load_params, parse_params, to_dict
from showo_turbo.sampling import t2i_generate
from two_processes import distill_two_processes

DM = CurriculumStage(method="dm", segments=1, init_dir="data/teacher")


@pytest.fixture(scope="module")
def workdir(make_distill_workdir):
    return make_distill_workdir("matched", seed=2)


def matched(dp):
    return replace(dp, dm=replace(dp.dm, image_loss="matched"))


def test_pair_log_likelihood_is_each_starts_log_probability_of_each_sample():
    g = torch.Generator().manual_seed(0)
    logits, samples = torch.randn(3, 5, 7, generator=g), torch.randint(0, 7, (3, 5), generator=g)
    logp = logits.log_softmax(-1)
    want = torch.tensor([[sum(float(logp[i, n, samples[j, n]]) for n in range(5)) for j in range(3)] for i in range(3)])
    assert torch.allclose(pair_log_likelihood(logits, samples), want, atol=1e-5)


def test_assignment_pairs_each_start_with_the_sample_it_makes_most_likely():
    g = torch.Generator().manual_seed(1)
    G, K, N, C = 2, 4, 6, 9
    samples = torch.randint(0, C, (G, K, N), generator=g)
    perms = [torch.randperm(K, generator=g) for _ in range(G)]
    # Start i of caption g puts most of its mass on sample perms[g][i] (a one-hot bump), so that pairing
    # is the unique best; the brute force over all K! pairings agrees.
    logits = torch.randn(G * K, N, C, generator=g) * 0.1
    for gi, p in enumerate(perms):
        for i in range(K):
            logits[gi * K + i].scatter_add_(-1, samples[gi, p[i]].unsqueeze(-1), torch.full((N, 1), 3.0))
    targets, gain = assign_samples(logits, samples)
    for gi, p in enumerate(perms):
        assert torch.equal(targets[gi * K:(gi + 1) * K], samples[gi, p])
        L = pair_log_likelihood(logits[gi * K:(gi + 1) * K], samples[gi])
        best = max(itertools.permutations(range(K)), key=lambda s: sum(float(L[i, s[i]]) for i in range(K)))
        assert list(best) == p.tolist()
    assert gain > 0.5
    # Starts that say nothing (equal logits): no gain over a random pairing.
    _, flat = assign_samples(torch.zeros(G * K, N, C), samples)
    assert abs(float(flat)) < 1e-6


def test_teacher_pool_is_the_samplers_draws_and_resumes_after_any_batch(micro_world, tmp_path):
    torch.manual_seed(0)
    from showo_turbo.teacher import model_config_for
    teacher = ShowoModel(model_config_for(micro_world, "micro")).eval()
    caps, lens = torch.randint(5, 20, (3, 4)), torch.tensor([4, 3, 2])
    kw = dict(samples=2, steps=3, cfg_scale=2.0, temperature=4.5, seed=0, batch_size=4, progress=False)
    pool = teacher_pool(teacher, caps, lens, tmp_path / "pool.safetensors", "sha", **kw)
    assert pool.shape == (3, 2, teacher.config.num_image_tokens)
    # Independent expectation: the sampler itself, batch by batch, captions repeated per sample.
    rows_c, rows_l = caps.repeat_interleave(2, 0), lens.repeat_interleave(2, 0)
    want = torch.cat([t2i_generate(teacher, rows_c[b:b + 4], rows_l[b:b + 4], steps=3, cfg_scale=2.0, temperature=4.5,
                                   generator=torch.Generator().manual_seed(b // 4)).codes for b in (0, 4)])
    assert torch.equal(pool.flatten(0, 1).long(), want)
    # Interrupted after its first batch: the build resumes there and gives the same pool.
    key = pool_key("sha", caps, lens, 2, 3, 2.0, 4.5, 0, 4, "fp32")
    write_safetensors({"codes": pool.flatten(0, 1)[:4]}, tmp_path / "part.safetensors",
                      {"format": "showo-turbo/teacher-pool", "version": 1, "key": key, "rows": 6})
    assert torch.equal(teacher_pool(teacher, caps, lens, tmp_path / "part.safetensors", "sha", **kw), pool)
    # Another teacher (its hash is in the key): rebuilt, not reused.
    other = teacher_pool(ShowoModel(teacher.config).eval(), caps, lens, tmp_path / "part.safetensors", "sha2", **kw)
    assert other.shape == pool.shape and not torch.equal(other, pool)
    # A foreign file is refused by name.
    (tmp_path / "foreign.safetensors").write_bytes(b"not a pool")
    with pytest.raises(PoolError, match="foreign.safetensors"):
        teacher_pool(teacher, caps, lens, tmp_path / "foreign.safetensors", "sha", **kw)


def test_batch_must_be_a_multiple_of_the_pool_samples(micro_params):
    data = to_dict(micro_params)
    data["distill"]["dm"].update(image_loss="matched", batch_t2i=6, pool_samples=4)
    with pytest.raises(ParamsError, match=r"distill\.dm\.batch_t2i: must be a multiple"):
        parse_params(data)


def test_pair_log_likelihood_sums_only_where_asked():
    g = torch.Generator().manual_seed(4)
    logits, samples = torch.randn(3, 5, 7, generator=g), torch.randint(0, 7, (3, 5), generator=g)
    where = torch.rand(3, 5, generator=g) < 0.5
    logp = logits.log_softmax(-1)
    want = torch.tensor([[sum(float(logp[i, n, samples[j, n]]) for n in range(5) if where[i, n]) for j in range(3)]
                         for i in range(3)])
    assert torch.allclose(pair_log_likelihood(logits, samples, where), want, atol=1e-5)


@pytest.mark.parametrize("pairing", ["student", "teacher"])
def test_matched_targets_are_the_assigned_pool_samples_of_each_caption(workdir, micro_params, monkeypatch, pairing):
    """The first pass's loss is the cross-entropy to the assignment's samples: recomputed by brute
    force over pairings from the student's logits (all positions) or the frozen teacher's (masked
    positions of the start), and the samples are the caption's own pool draws."""
    monkeypatch.chdir(workdir)
    from accelerate import Accelerator
    from showo_turbo.distribution_matching import DMTraining
    dp = matched(micro_params.distill)
    dp = replace(dp, dm=replace(dp.dm, pairing=pairing))
    tr = DMTraining(Accelerator(cpu=True), DM, dp, "data/trajectories", "data/teacher", "data/teacher",
                    pool_path=workdir / "pool.safetensors")
    K = dp.dm.pool_samples
    assert tr.aux is None and tr.pool.shape[:2] == (min(dp.dm.pool_captions, len(tr.batches.t2i["caption"])), K)
    g = torch.Generator().manual_seed(3)
    batch = tr._matched_batch(g)
    G = dp.dm.batch_t2i // K
    assert batch["samples"].shape[:2] == (G, K) and len(batch["start"]) == G * K
    for gi in range(G):  # each group: one caption, and the pool samples are that caption's
        rows = batch["caption"][gi * K:(gi + 1) * K]
        assert (rows == rows[0]).all()
        c = int(torch.nonzero((tr.pool_caption == rows[0]).all(-1))[0])
        assert torch.equal(batch["samples"][gi], tr.pool[c].long())
    # A student that is not the teacher, so that the two pairings differ.
    torch.manual_seed(7)
    student = ShowoModel(tr.student_model().config).eval()
    teacher = load_model(workdir / "data" / "teacher" / "model.safetensors").eval()
    from showo_turbo.model import image_state_ids, t2i_sequences
    cfg = student.config
    ids = t2i_sequences(batch["caption"], batch["caption_len"], image_state_ids(batch["start"], cfg), cfg)
    with torch.no_grad():
        logits = student.image_logits(ids)
        pair_logits = logits if pairing == "student" else teacher.image_logits(ids)
        out = MatchedObjective(student, replace(dp, dm=replace(dp.dm, embed_noise=0.0)), teacher)(
            {**batch, **tr.batches.draw_text(g)}, torch.Generator().manual_seed(0))
    logp = logits.log_softmax(-1)
    want = 0.0
    for gi in range(G):
        rows = slice(gi * K, (gi + 1) * K)
        where = None if pairing == "student" else batch["start"][rows] < 0
        L = pair_log_likelihood(pair_logits[rows], batch["samples"][gi], where)
        best = max(itertools.permutations(range(K)), key=lambda s: sum(float(L[i, s[i]]) for i in range(K)))
        for i in range(K):  # the student's cross-entropy towards the sample the pairing chose
            want += float(logp[gi * K + i].gather(-1, batch["samples"][gi, best[i]].unsqueeze(-1)).sum())
    want = -want / (G * K * cfg.num_image_tokens)
    assert float(out["image_first"]) == pytest.approx(want, rel=1e-4)
    assert float(out["match_gain"]) >= 0


@pytest.mark.parametrize("image_loss", ["matched", "dm_matched"])
def test_matched_stage_resumes_bit_identically_and_keeps_its_pool(workdir, micro_params, monkeypatch, image_loss):
    monkeypatch.chdir(workdir)
    dp = micro_params.distill
    dp = replace(dp, dm=replace(dp.dm, image_loss=image_loss))
    full_dir, part_dir = workdir / f"{image_loss}_full", workdir / f"{image_loss}_part"
    full = distill_stage(DM, dp, "data/trajectories", full_dir, cpu=True, progress=False)
    assert full["step"] == dp.dm.steps
    keys = {"image", "image_first", "image_later", "match_gain", "lm", "consistency", "ar", "total"}
    if image_loss == "dm_matched":  # the dm terms as well, and the auxiliary model trains
        keys |= {"image_dm", "aux", "tv_aux_teacher"}
    assert keys == set(full["losses"]["process_0"])
    assert (full_dir / POOL_FILE).is_file()
    assert (full_dir / "checkpoint" / "aux.safetensors").exists() == (image_loss == "dm_matched")
    part = distill_stage(DM, dp, "data/trajectories", part_dir, cpu=True, progress=False, max_steps=3)
    assert part["step"] == 3
    resumed = distill_stage(DM, dp, "data/trajectories", part_dir, cpu=True, progress=False)
    assert resumed["resumed_from"] == 3 and resumed["step"] == dp.dm.steps
    for name in ("model.safetensors", "checkpoint/model.safetensors"):
        a, b = load_model(full_dir / name).state_dict(), load_model(part_dir / name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    t = load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()
    s = load_model(full_dir / "checkpoint" / "model.safetensors").state_dict()
    assert any(not torch.equal(s[k], t[k]) for k in t)  # it trained


def test_dm_matched_gradient_is_dms_plus_the_weighted_matched_gradient(workdir, micro_params, monkeypatch):
    """image_loss dm_matched: the student's gradient is the dm objective's plus matched_weight times
    the matched cross-entropy's, each computed on its own (same batch, same random stream)."""
    monkeypatch.chdir(workdir)
    from accelerate import Accelerator
    from showo_turbo.distribution_matching import DMObjective, DMTraining
    from showo_turbo.matched_samples import matched_image_loss
    dp = micro_params.distill
    dp = replace(dp, dm=replace(dp.dm, image_loss="dm_matched", matched_weight=0.7, embed_noise=0.0))
    tr = DMTraining(Accelerator(cpu=True), DM, dp, "data/trajectories", "data/teacher", "data/teacher",
                    pool_path=workdir / "pool_dmm.safetensors")
    g = torch.Generator().manual_seed(11)
    caps, lens, start = tr._start(g)
    batch = {"caption": caps, "caption_len": lens, "start": start, "steps": torch.tensor(1), **tr.batches.draw_text(g),
             **{f"matched_{k}": v for k, v in tr._matched_batch(g).items()}}
    student, teacher, aux = tr.student_model().eval(), tr.objective.teacher, tr.aux  # eval: no dropout between the calls

    def grads(loss):
        student.zero_grad(set_to_none=True)
        loss.backward()
        return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in student.parameters()])

    both = grads(DMObjective(student, teacher, aux, dp)(batch, torch.Generator().manual_seed(5))["total"])
    g_dm = torch.Generator().manual_seed(5)
    dm_only = grads(DMObjective(student, teacher, aux, replace(dp, dm=replace(dp.dm, image_loss="dm")))(batch, g_dm)["total"])
    # The matched term draws from the random stream where the dm terms left it.
    m_loss, _ = matched_image_loss(student, teacher, dp, *(batch[f"matched_{k}"] for k in
                                                         ("caption", "caption_len", "start", "samples")), g_dm)
    matched_only = grads(dp.weight_image * m_loss)
    assert matched_only.abs().sum() > 0
    assert torch.allclose(both, dm_only + 0.7 * matched_only, atol=1e-5, rtol=1e-4)


def test_matched_stage_two_processes_share_one_pool_and_stay_in_sync(workdir):
    """accelerate launch, 2 processes: the main process draws the pool, the other reads it after the
    barrier; both train one set of weights on their own batches."""
    from pathlib import Path

    import yaml
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / "micro.yaml").read_text())
    data["distill"]["dm"]["image_loss"] = "matched"
    params = workdir / "params_matched.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))  # the curriculum order matters
    r = distill_two_processes(workdir, params, "dm", "two_matched")
    assert r["processes"] == 2 and r["step"] == data["distill"]["dm"]["steps"]
    assert r["losses"]["process_0"] != r["losses"]["process_1"]  # own batches ...
    assert r["weight_checksums"][0] == r["weight_checksums"][1]  # ... one set of weights
    assert (workdir / "two_matched" / POOL_FILE).is_file()
