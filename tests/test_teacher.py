"""Teacher stage: the scratch recipe (incl. resume after an interruption), cards, shipped-teacher checks, metrics."""

from showo_turbo.pipeline import params as P
import json

import pytest
import torch

from showo_turbo.model.showo import CheckpointError, load_model
from showo_turbo.training.teacher import (TeacherMismatchError, evaluate_teacher, lr_at, make_card,
                                 obtain_teacher, read_card, scale_key, train_teacher)


@pytest.fixture(scope="module")
def recipe(micro_params):
    return P.replace(micro_params.teacher.train, steps=12, checkpoint_every=4, log_every=2)


def test_scratch_training_resumes_exactly_after_an_interruption(micro_world, recipe, tmp_path):
    whole = train_teacher(micro_world, recipe, tmp_path / "whole")
    part = train_teacher(micro_world, recipe, tmp_path / "cut", max_steps=7)  # "killed" after step 7
    assert part["step"] == 7
    resumed = train_teacher(micro_world, recipe, tmp_path / "cut")
    assert whole["step"] == resumed["step"] == 12
    a = load_model(tmp_path / "whole" / "checkpoint" / "model.safetensors").state_dict()
    b = load_model(tmp_path / "cut" / "checkpoint" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = [json.loads(line) for line in open(tmp_path / "whole" / "history.jsonl")]
    assert [h["step"] for h in hist] == [2, 4, 6, 8, 10, 12]
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in hist) and hist[-1]["t2i"] < hist[0]["t2i"]


def test_resume_refuses_another_recipe(micro_world, recipe, tmp_path):
    train_teacher(micro_world, recipe, tmp_path, max_steps=4)
    with pytest.raises(CheckpointError, match="trained with another recipe"):
        train_teacher(micro_world, P.replace(recipe, lr=0.5), tmp_path)


def test_lr_schedule(micro_params):
    r = P.replace(micro_params.teacher.train, steps=1000, warmup_steps=100, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, r) == pytest.approx(0.01) and lr_at(99, r) == pytest.approx(1.0)
    assert lr_at(100, r) == pytest.approx(1.0) and lr_at(1000, r) == pytest.approx(0.1)
    assert 0.1 < lr_at(550, r) < 1.0


def test_shipped_teacher_is_checked_against_the_world(micro_world, micro_params, recipe, tmp_path):
    ckpt = tmp_path / "ckpt"
    prog = train_teacher(micro_world, recipe, ckpt)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "model.safetensors").write_bytes((ckpt / "checkpoint" / "model.safetensors").read_bytes())
    card = make_card(micro_world, recipe, prog, [])
    (shipped / "card.json").write_text(json.dumps(card))
    tp = P.replace(micro_params.teacher, source="shipped", shipped_dir=str(shipped))
    model, got = obtain_teacher(tp, micro_world, tmp_path / "out", tmp_path / "unused")
    assert got["world_fingerprint"] == micro_world.fingerprint()
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # A teacher from another world is refused with a message naming what differs.
    card["world_fingerprint"]["codebook_sha256"] = "0" * 64
    card["world_params"]["colours"] = ["red", "blue"]
    (shipped / "card.json").write_text(json.dumps(card))
    with pytest.raises(TeacherMismatchError, match=r"trained on another world \(codebook_sha256 differ.*colours"):
        obtain_teacher(tp, micro_world, tmp_path / "out", tmp_path / "unused")
    (shipped / "card.json").write_text('{"format": "nope"}')
    with pytest.raises(TeacherMismatchError, match="card.json: format 'nope'"):
        read_card(shipped)


def test_teacher_metrics_have_the_stable_keys(micro_world, micro_params, recipe, tmp_path):
    train_teacher(micro_world, recipe, tmp_path)
    model = load_model(tmp_path / "checkpoint" / "model.safetensors")
    ep = P.replace(micro_params.teacher.eval, steps=(1, 2), cfg_scales=(1.5,), prompts_per_category=2)
    m = evaluate_teacher(model, micro_world, ep, {"train": {"minutes": 0.1}}, bootstrap=10)
    assert sorted(m["t2i"]) == ["steps_1", "steps_2"]
    assert sorted(m["t2i"]["steps_2"]) == ["cfg_0", "cfg_1p5"]
    assert 0 <= m["t2i"]["steps_2"]["cfg_1p5"]["score"] <= 1 and 0 <= m["mmu"]["accuracy"] <= 1
    assert m["train"]["minutes"] == 0.1
    assert scale_key(2.0) == "cfg_2" and scale_key(0.0) == "cfg_0"


def test_loss_log_resume_trims_and_replays(tmp_path):
    """A run resumed from its step-20 checkpoint drops what a killed run logged after it, and replays
    the kept history into DVCLive (whose folder DVC deletes before rerunning a stage)."""
    import json

    from showo_turbo.pipeline.io import LossLog

    class FakeLive:
        def __init__(self):
            self.step, self.logged = 0, []

        def log_metric(self, name, value):
            self.logged.append((self.step, name, value))

        def next_step(self):
            pass

    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps({"step": s, "seconds": s / 10, "t2i": 1 / s}) + "\n" for s in (10, 20, 30)))
    live = FakeLive()
    LossLog(path, live, "train").resume(20)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]
    assert live.logged == [(10, "train/loss_t2i", 0.1), (20, "train/loss_t2i", 0.05)]


def test_one_warmup_schedule_for_teacher_and_students():
    """The distillation stages' lr (warmup, then constant) is the teacher's schedule without decay."""
    from showo_turbo.training.loop import warmup_lr
    assert [warmup_lr(s, 1.0, 4) for s in (0, 1, 3, 4, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert warmup_lr(2, 1.0, 4, 100, 0.1) == warmup_lr(2, 1.0, 4)  # the same warmup under a decay
    assert warmup_lr(100, 1.0, 4, 100, 0.1) == pytest.approx(0.1)
