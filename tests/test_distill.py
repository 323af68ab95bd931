"""Segmented consistency distillation: its targets, one stage (interrupted and resumed), and two
processes through `accelerate launch`."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from showo_turbo.pipeline.params import replace
from pathlib import Path

import pytest
import torch

from showo_turbo.methods.consistency import image_targets, segment_end_of
from showo_turbo.methods.text import text_targets
from showo_turbo.training.distill import distill_stage
from showo_turbo.model.showo import load_model
from showo_turbo.model.showo import CheckpointError
from showo_turbo.pipeline.params import ParamsError, StageEntry
from showo_turbo.training.teacher import model_config_for
from showo_turbo.training.trajectories import load_store
from two_processes import distill_two_processes



@pytest.fixture(scope="module")
def workdir(make_distill_workdir):
    """A folder laid out like the pipeline's: data/teacher (a random micro teacher) and data/trajectories."""
    return make_distill_workdir("distill", seed=0)


def test_segment_end_of_each_step():
    assert segment_end_of(8, 4).tolist() == [1, 1, 3, 3, 5, 5, 7, 7]
    assert segment_end_of(8, 1).tolist() == [7] * 8


def test_image_targets_point_at_commit_or_segment_end(workdir):
    store = load_store(workdir / "data" / "trajectories" / "t2i", "t2i")
    T = store["probs"].shape[1]
    rows, t = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, T - 1, T // 2])
    for segments in (1, 2, T):
        state, masked, probs, index = image_targets(store, rows, t, segments)
        ends = segment_end_of(T, segments)
        for b, (r, k) in enumerate(zip(rows.tolist(), t.tolist())):
            for i in range(store["codes"].shape[1]):
                c = int(store["commit_step"][r, i])
                assert bool(masked[b, i]) == (c >= k) and (int(state[b, i]) == -1) == (c >= k)
                if c >= k:  # the last step up to the segment's end at which position i was still masked
                    s = min(c, int(ends[k]))
                    assert torch.equal(index[b, i], store["index"][r, s, i].long())
                    p = store["probs"][r, s, i].float()
                    assert torch.allclose(probs[b, i], p / p.sum(), atol=1e-6)
        if segments == T:  # one step per segment: the target is that step's own distribution
            assert torch.equal(index[masked], store["index"][rows].long()[torch.arange(4), t][masked])


def test_text_targets(workdir, micro_world):
    store = load_store(workdir / "data" / "trajectories" / "mmu", "mmu")
    rows = torch.arange(min(8, len(store["answer"])))
    out = text_targets(store, rows, 2, model_config_for(micro_world, "micro"), torch.Generator().manual_seed(0))
    n = store["states"].shape[-1]
    for b, r in enumerate(rows.tolist()):
        ids, i0, e0 = out["mmu_ids"][b], int(out["pos_i"][b, 1]), int(out["pos_e"][b, 1])
        assert e0 == i0 + n and int(out["pos_i"][b, 0]) == int(out["pos_e"][b, 0])  # m = 0: the shared token before
        x_i, x_e = ids[i0:i0 + n], ids[e0:e0 + n]
        states = store["states"][r].long()
        assert any(torch.equal(x_i, s) for s in states.flatten(0, 1)) and any(torch.equal(x_e, s) for s in states.flatten(0, 1))
        differ = torch.nonzero(x_i != x_e).flatten()
        first = int(differ[0]) if len(differ) else n
        assert out["loss_mask"][b].tolist() == [m > first and m >= 1 for m in range(n)]
        ar = torch.nonzero(out["ar_target"][b]).flatten()
        assert len(ar) == int(store["answer_len"][r])
        answer = store["answer"][r, :len(ar)].long()
        assert torch.equal(ids[ar + 1], answer)  # each AR position predicts the next answer token


def _separate_sequences(out: dict, b: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Row b of the packed batch as the three sequences it stands for: before + x_i, before + x_e and
    prompt + answer (read off the packing's own positions), and where the block starts."""
    ids, allowed = out["mmu_ids"][b], out["mmu_allowed"][b]
    i0, before = int(out["pos_i"][b, 1]), int(out["pos_i"][b, 0]) + 1
    assert allowed[i0, :before].all() and not allowed[i0, before:i0].any()  # x_i sees exactly `before`
    main = int(torch.nonzero(out["ar_target"][b]).max()) + 2  # prompt + answer (the fixed point's length)
    return (torch.cat([ids[:before], ids[i0:i0 + n]]), torch.cat([ids[:before], ids[i0 + n:i0 + 2 * n]]),
            ids[:max(main, before)], before)


def test_packed_text_losses_equal_separate_sequences(workdir, micro_world, micro_params):
    """The packed forward gives the losses that three separate forwards (each with the plain MMU mask)
    give: the consistency loss on (before + x_i, before + x_e) and the AR loss on prompt + answer."""
    from showo_turbo.methods.consistency import ConsistencyObjective, draw_batch
    from showo_turbo.methods.text import TrajectoryBatches, soft_cross_entropy
    from showo_turbo.model.showo import mmu_attention_mask

    student = load_model(workdir / "data" / "teacher" / "model.safetensors")
    torch.manual_seed(1)
    with torch.no_grad():  # a student that is not the teacher, so that x_i and x_e predictions differ
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    dp = replace(micro_params.distill, batch_mmu=32)  # enough rows that some pairs differ
    stage = StageEntry(method="consistency", segments=2, init_dir="data/teacher", arm=None)
    batches = TrajectoryBatches(workdir / "data" / "trajectories", stage, dp, student.config)
    batch = draw_batch(batches, dp.method("consistency").batch_t2i, torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = ConsistencyObjective(student, dp)(batch)
        n = batch["loss_mask"].shape[1]
        cons, weight, ar_logp = [], [], []
        for b in range(len(batch["mmu_ids"])):
            seq_i, seq_e, seq_ar, start = _separate_sequences(batch, b, n)
            h_i = student.hidden(seq_i[None], mmu_attention_mask(seq_i[None], student.config))[0]
            h_e = student.hidden(seq_e[None], mmu_attention_mask(seq_e[None], student.config))[0]
            pos = (start + torch.arange(n) - 1)
            ce = soft_cross_entropy(student.logits(h_i[pos]), student.logits(h_e[pos]).float().softmax(-1))
            cons.append((ce * batch["loss_mask"][b]).sum())
            weight.append(batch["loss_mask"][b].sum())
            h = student.hidden(seq_ar[None], mmu_attention_mask(seq_ar[None], student.config))[0]
            q = torch.nonzero(batch["ar_target"][b]).flatten()
            ar_logp.append(student.logits(h[q]).float().log_softmax(-1).gather(1, seq_ar[q + 1].view(-1, 1)).flatten())
    expected_cons = torch.stack(cons).sum() / torch.stack(weight).sum().clamp(min=1)
    expected_ar = -torch.cat(ar_logp).mean()
    assert float(expected_cons) > 1e-3 and float(expected_ar) > 1e-3  # neither loss is trivially zero here
    prompt_len = torch.stack([torch.nonzero(r).min() + 1 for r in batch["ar_target"]])
    assert (batch["pos_i"][:, 0] + 1 > prompt_len).any()  # some rows have earlier blocks before x_i
    assert torch.allclose(got["consistency"], expected_cons, rtol=1e-4, atol=1e-6)
    assert torch.allclose(got["ar"], expected_ar, rtol=1e-4, atol=1e-6)


def consistency_with(dp, **changes):
    """`dp` with these distill.consistency keys changed."""
    return replace(dp, consistency=replace(dp.method("consistency"), **changes))


def _teacher_weights(workdir):
    return load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()


def test_stage_resumes_after_an_interruption(workdir, micro_params, monkeypatch):
    monkeypatch.chdir(workdir)
    dp, stage = micro_params.distill, StageEntry(method="consistency", segments=2, init_dir="data/teacher", arm=None)
    full = distill_stage(stage, dp, "data/trajectories", workdir / "full", cpu=True, progress=False)
    assert full["step"] == dp.method("consistency").steps and (workdir / "full" / "model.safetensors").is_file()
    part = distill_stage(stage, dp, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=3)
    assert part["step"] == 3 and not (workdir / "part" / "model.safetensors").is_file()
    # The dm section is not a consistency stage's: editing it does not stop the resume.
    dm_edited = replace(dp, dm=replace(dp.method("dm"), aux_lr=dp.method("dm").aux_lr * 2))
    resumed = distill_stage(stage, dm_edited, "data/trajectories", workdir / "part", cpu=True, progress=False)
    assert resumed["step"] == dp.method("consistency").steps and resumed["resumed_from"] == 3 and full["resumed_from"] == 0
    steps = [json.loads(line)["step"] for line in open(workdir / "part" / "history.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == dp.method("consistency").steps and 3 in steps  # one history, continued
    a = load_model(workdir / "full" / "model.safetensors").state_dict()
    b = load_model(workdir / "part" / "model.safetensors").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # resumed == uninterrupted
    t = _teacher_weights(workdir)
    assert any(not torch.equal(a[k], t[k]) for k in a)
    # Other params: the checkpoint is refused, naming the changed key, and replaced only when asked.
    doubled = consistency_with(dp, lr=dp.method("consistency").lr * 2)
    with pytest.raises(CheckpointError, match=r"another recipe \(consistency.lr 0.0001 -> 0.0002\); .*SHOWO_TURBO_RESTART=1"):
        distill_stage(stage, doubled, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=2)
    other = distill_stage(stage, doubled, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=2,
                          restart=True)
    assert other["step"] == 2 and other["resumed_from"] == 0


def test_a_larger_budget_continues_the_finished_stage(workdir, micro_params, monkeypatch):
    """The lr is constant after warmup, so N steps then N more == 2N steps in one go; a smaller
    budget than the checkpoint's step is another recipe (the checkpoint is further than the budget)."""
    monkeypatch.chdir(workdir)
    dp, stage = micro_params.distill, StageEntry(method="consistency", segments=2, init_dir="data/teacher", arm=None)
    short, long = consistency_with(dp, steps=2), consistency_with(dp, steps=4)
    one_go = distill_stage(stage, long, "data/trajectories", workdir / "one", cpu=True, progress=False)
    distill_stage(stage, short, "data/trajectories", workdir / "two", cpu=True, progress=False)
    more = distill_stage(stage, long, "data/trajectories", workdir / "two", cpu=True, progress=False)
    assert one_go["resumed_from"] == 0 and more["resumed_from"] == 2 and more["step"] == 4
    a = load_model(workdir / "one" / "model.safetensors").state_dict()
    b = load_model(workdir / "two" / "model.safetensors").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(CheckpointError, match="consistency.steps 4 -> 3"):
        distill_stage(stage, consistency_with(dp, steps=3), "data/trajectories", workdir / "two", cpu=True, progress=False)
    fewer = distill_stage(stage, consistency_with(dp, steps=3), "data/trajectories", workdir / "two", cpu=True, progress=False,
                          restart=True)
    assert fewer["resumed_from"] == 0 and fewer["step"] == 3


@pytest.mark.slow
def test_two_processes_through_accelerate(workdir):
    r = distill_two_processes(workdir, Path(__file__).resolve().parents[1] / "params" / "micro.yaml", "seg2", "two")
    assert r["processes"] == 2 and set(r["losses"]) == {"process_0", "process_1"}
    for losses in r["losses"].values():
        assert set(losses) == {"image", "lm", "consistency", "ar", "total"}
        assert all(math.isfinite(v) for v in losses.values())
    assert r["losses"]["process_0"] != r["losses"]["process_1"]  # each process drew its own batches ...
    assert r["weight_checksums"][0] == r["weight_checksums"][1]  # ... and DDP kept their weights identical
    student = load_model(workdir / "two" / "model.safetensors").state_dict()
    t = _teacher_weights(workdir)
    assert any(not torch.equal(student[k], t[k]) for k in student)


def test_budget_script_overrides_the_params_files_own_stage_names():
    """A run that redefines params.yaml's curriculum under its own names (seg4 -> seg2 -> seg1, e.g. the
    2026-11-27 GPU scripts) validates in chain order and keeps exactly the run's stages and values."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("distill_budget", root / "scripts" / "distill_budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    curriculum = ("{seg4: {method: consistency, segments: 4, init_dir: data/teacher, arm: null}, "
                  "seg2: {method: consistency, segments: 2, init_dir: data/students/seg4, arm: null}, "
                  "seg1: {method: consistency, segments: 1, init_dir: data/students/seg2, arm: null}}")
    params = budget.params_with(str(root / "params.yaml"), [f"distill.stages={curriculum}",
                                                            "distill.consistency.lr=0.0005"])
    assert list(params.distill.stages) == ["seg4", "seg2", "seg1"]
    assert [st.segments for st in params.distill.stages.values()] == [4, 2, 1]
    assert params.distill.method("consistency").lr == 0.0005
    with pytest.raises(ParamsError, match="distill.steps: unknown key"):
        budget.params_with(str(root / "params.yaml"), ["distill.steps=250"])  # the pre-2026-12-01 key


@pytest.mark.slow
def test_budget_script_runs_a_chain_and_scores_every_stage(workdir, micro_world):
    """scripts/distill_budget.py (the out-of-pipeline budget study): a two-stage chain over the
    pipeline's trajectory store (reused, not collected again), a summary per stage, students trained."""
    root = Path(__file__).resolve().parents[1]
    chain = ("{a: {method: consistency, segments: 2, init_dir: data/teacher, arm: null}, "
             "b: {method: consistency, segments: 1, init_dir: data/students/a, arm: null}}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    args = [sys.executable, str(root / "scripts" / "distill_budget.py"), str(workdir / "budget"),
            "--params", str(root / "params" / "micro.yaml"), "--world", str(micro_world.root),
            "--teacher", str(workdir / "data" / "teacher"), "--trajectories", str(workdir / "data" / "trajectories"),
            "--device", "cpu", "--set", f"distill.stages={chain}", "--set", "distill.consistency.steps=3"]
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "t2i trajectories: reusing" in res.stdout and "mmu trajectories: reusing" in res.stdout
    summary = json.loads((workdir / "budget" / "summary.json").read_text())
    assert list(summary["stages"]) == ["a", "b"] and summary["settings"]["distill"]["consistency"]["steps"] == 3
    for stage in summary["stages"].values():
        assert set(stage["t2i"]) == {"steps_2", "steps_4"} and 0 <= stage["t2i"]["steps_4"]["score"] <= 1
        assert {"accuracy", "forwards_per_token"} <= set(stage["mmu"]) and stage["mmu"]["forwards_per_token"] > 0
    a, b = (load_model(workdir / "budget" / "students" / s / "model.safetensors").state_dict() for s in "ab")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # b trained on from a
    bad = subprocess.run(args[:-4] + ["--set", "distill.segments=2"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "distill.segments: unknown key" in bad.stderr
