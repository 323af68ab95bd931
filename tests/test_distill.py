"""Segmented consistency distillation: its targets, one stage (interrupted and resumed), and two
processes through `accelerate launch`."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from showo_turbo.distill import distill_stage, image_targets, segment_end_of, text_targets
from showo_turbo.model import ShowoModel, load_model, save_model
from showo_turbo.params import CurriculumStage
from showo_turbo.teacher import model_config_for
from showo_turbo.trajectories import collect_mmu, collect_t2i, load_store

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def workdir(micro_world, micro_params, tmp_path_factory):
    """A folder laid out like the pipeline's: data/teacher (a random micro teacher) and data/trajectories."""
    root = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    teacher = ShowoModel(model_config_for(micro_world, "micro")).eval()
    (root / "data" / "teacher").mkdir(parents=True)
    save_model(teacher, root / "data" / "teacher" / "model.safetensors")
    tp = micro_params.trajectories
    collect_t2i(teacher, micro_world, tp, root / "data" / "trajectories" / "t2i", progress=False)
    collect_mmu(teacher, micro_world, tp, root / "data" / "trajectories" / "mmu", progress=False)
    return root


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
    pad = micro_world.layout.pad_id
    rows = torch.arange(min(8, len(store["answer"])))
    out = text_targets(store, rows, 2, pad, torch.Generator().manual_seed(0))
    n = store["states"].shape[-1]
    for b, r in enumerate(rows.tolist()):
        start = int(out["block_start"][b])
        assert torch.equal(out["seq_i"][b, :start], out["seq_e"][b, :start])  # same prompt and earlier blocks
        x_i, x_e = out["seq_i"][b, start:start + n], out["seq_e"][b, start:start + n]
        differ = torch.nonzero(x_i != x_e).flatten()
        first = int(differ[0]) if len(differ) else n
        assert out["loss_mask"][b].tolist() == [m > first and m >= 1 for m in range(n)]
        assert int(out["ar_target"][b].sum()) == int(store["answer_len"][r])


def _teacher_weights(workdir):
    return load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()


def test_stage_resumes_after_an_interruption(workdir, micro_params, monkeypatch):
    monkeypatch.chdir(workdir)
    dp, stage = micro_params.distill, CurriculumStage(2, "data/teacher")
    full = distill_stage(stage, dp, "data/trajectories", workdir / "full", cpu=True, progress=False)
    assert full["step"] == dp.steps and (workdir / "full" / "model.safetensors").is_file()
    part = distill_stage(stage, dp, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=3)
    assert part["step"] == 3 and not (workdir / "part" / "model.safetensors").is_file()
    resumed = distill_stage(stage, dp, "data/trajectories", workdir / "part", cpu=True, progress=False)
    assert resumed["step"] == dp.steps and resumed["resumed_from"] == 3 and full["resumed_from"] == 0
    steps = [json.loads(line)["step"] for line in open(workdir / "part" / "history.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == dp.steps and 3 in steps  # one history, continued
    a = load_model(workdir / "full" / "model.safetensors").state_dict()
    b = load_model(workdir / "part" / "model.safetensors").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # resumed == uninterrupted
    t = _teacher_weights(workdir)
    assert any(not torch.equal(a[k], t[k]) for k in a)
    # Other params: the checkpoint is not resumed but replaced.
    other = distill_stage(stage, replace(dp, lr=dp.lr * 2), "data/trajectories", workdir / "part", cpu=True,
                          progress=False, max_steps=2)
    assert other["step"] == 2 and other["resumed_from"] == 0


def test_two_processes_through_accelerate(workdir):
    params = Path(__file__).resolve().parents[1] / "params" / "micro.yaml"
    report = workdir / "report.json"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    # --multi_gpu selects accelerate's torchrun launcher; without a GPU the processes train on the CPU (gloo).
    res = subprocess.run([BIN / "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "showo_turbo.distill",
                          "--params", str(params), "--stage", "seg2", "--out", "two", "--report", str(report)],
                         cwd=workdir, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    r = json.loads(report.read_text())
    assert r["processes"] == 2 and set(r["losses"]) == {"process_0", "process_1"}
    for losses in r["losses"].values():
        assert set(losses) == {"image", "lm", "consistency", "ar", "total"}
        assert all(math.isfinite(v) for v in losses.values())
    assert r["losses"]["process_0"] != r["losses"]["process_1"]  # each process drew its own batches ...
    assert r["weight_checksums"][0] == r["weight_checksums"][1]  # ... and DDP kept their weights identical
    student = load_model(workdir / "two" / "model.safetensors").state_dict()
    t = _teacher_weights(workdir)
    assert any(not torch.equal(student[k], t[k]) for k in student)


def test_budget_script_runs_a_chain_and_scores_every_stage(workdir, micro_world):
    """scripts/distill_budget.py (the out-of-pipeline budget study): a two-stage chain over the
    pipeline's trajectory store (reused, not collected again), a summary per stage, students trained."""
    root = Path(__file__).resolve().parents[1]
    chain = "{a: {segments: 2, init_dir: data/teacher}, b: {segments: 1, init_dir: data/students/a}}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    args = [sys.executable, str(root / "scripts" / "distill_budget.py"), str(workdir / "budget"),
            "--params", str(root / "params" / "micro.yaml"), "--world", str(micro_world.root),
            "--teacher", str(workdir / "data" / "teacher"), "--trajectories", str(workdir / "data" / "trajectories"),
            "--device", "cpu", "--set", f"distill.stages={chain}", "--set", "distill.steps=3"]
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "t2i trajectories: reusing" in res.stdout and "mmu trajectories: reusing" in res.stdout
    summary = json.loads((workdir / "budget" / "summary.json").read_text())
    assert list(summary["stages"]) == ["a", "b"] and summary["settings"]["distill"]["steps"] == 3
    for stage in summary["stages"].values():
        assert set(stage["t2i"]) == {"steps_2", "steps_4"} and 0 <= stage["t2i"]["steps_4"]["score"] <= 1
        assert {"accuracy", "forwards_per_token"} <= set(stage["mmu"]) and stage["mmu"]["forwards_per_token"] > 0
    a, b = (load_model(workdir / "budget" / "students" / s / "model.safetensors").state_dict() for s in "ab")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # b trained on from a
    bad = subprocess.run(args[:-4] + ["--set", "distill.segments=2"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "distill.segments: unknown key" in bad.stderr
