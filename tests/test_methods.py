"""The method plug-in interface, proven by a method that ships nowhere (tests/toy_method.py): known
to params.yaml by name, validated by its own section's model, trained, resumed and scored by the
stage loop, which knows no method."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from showo_turbo.methods import METHODS, register_method
from showo_turbo.model.showo import load_model
from showo_turbo.pipeline.params import ParamsError, parse_params
from showo_turbo.training.distill import distill_stage, student_sampler

MICRO = Path(__file__).resolve().parents[1] / "params" / "micro.yaml"


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", "toy_method")  # (register_method, undone after the test)
    return "toy"


def toy_params(steps=4):
    """params/micro.yaml with a stage `t` of the toy method, scored as an arm of its own."""
    data = yaml.safe_load(MICRO.read_text())
    data["distill"]["stages"]["t"] = {"method": "toy", "segments": 1, "init_dir": "data/teacher",
                                      "arm": {"top_k": {t: 0 for t in data["evaluate"]["steps"]}, "temperature": 1.0}}
    data["distill"]["toy"] = {"steps": steps, "batch_t2i": 4, "lr": 0.05}
    return data


def test_a_new_method_is_a_file_and_a_name(toy, make_distill_workdir, monkeypatch):
    workdir = make_distill_workdir("toy", seed=2)
    monkeypatch.chdir(workdir)
    params = parse_params(toy_params())
    stage, dp = params.distill.stages["t"], params.distill
    assert dp.method("toy").steps == 4 and list(params.arms()) == ["dm", "t"]
    assert student_sampler(stage, dp) == ([1], {})
    part = distill_stage(stage, dp, "data/trajectories", workdir / "toy", cpu=True, progress=False, max_steps=2)
    done = distill_stage(stage, dp, "data/trajectories", workdir / "toy", cpu=True, progress=False)
    assert part["step"] == 2 and done["resumed_from"] == 2 and done["step"] == 4
    assert set(done["losses"]["process_0"]) == {"image", "total"}
    rows = [json.loads(line) for line in open(workdir / "toy" / "history.jsonl")]
    assert [r["step"] for r in rows] == [2, 4]
    teacher = load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()
    student = load_model(workdir / "toy" / "model.safetensors").state_dict()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)


def test_its_section_is_checked_by_its_own_model(toy):
    data = toy_params()
    data["distill"]["toy"]["lr"] = -1
    with pytest.raises(ParamsError, match=r"distill.toy.lr: must be >= 0.0, got -1"):
        parse_params(data, "params.yaml")
    del data["distill"]["toy"]
    with pytest.raises(ParamsError, match="distill.toy: missing: stages with method toy need this section"):
        parse_params(data, "params.yaml")


def test_an_unknown_method_is_refused_by_name():
    data = toy_params()
    with pytest.raises(ParamsError, match="distill.toy: unknown key"):  # not registered: its section is unknown
        parse_params(data, "params.yaml")
    del data["distill"]["toy"]
    with pytest.raises(ParamsError, match="distill.stages.t.method: unknown value 'toy'; allowed: consistency, dm, mixture"):
        parse_params(data, "params.yaml")
    register_method("toy", "toy_method")
    try:
        with pytest.raises(ParamsError, match="distill.toy: missing"):
            parse_params(data, "params.yaml")
    finally:
        del METHODS["toy"]
