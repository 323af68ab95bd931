"""One teacher sweep: the teacher stage's stored samples are exactly what the evaluate stage's
teacher arms would draw, reused only where every setting is equal; the store refuses a bad file."""

import dataclasses

from showo_turbo.pipeline.params import replace

import numpy as np
import pytest
import torch

from showo_turbo.evaluation.benchmark import arm_codes, evaluate_t2i, t2i_arms
from showo_turbo.evaluation.harness import decode_codes
from showo_turbo.model.showo import ShowoModel
from showo_turbo.evaluation.sample_store import SampleStore, SampleStoreError, sample_key
from showo_turbo.training.teacher import evaluate_teacher, model_config_for

SHA = "f" * 64  # stands for the teacher weights file's hash


@pytest.fixture(scope="module")
def teacher(micro_world):
    torch.manual_seed(1)
    return ShowoModel(model_config_for(micro_world, "micro")).eval()


@pytest.fixture(scope="module")
def ep(micro_params):
    """The evaluate stage's layout at a small scale."""
    return replace(micro_params.evaluate, steps=(1, 2), prompts_per_category=2, images_per_prompt=2, batch_size=5,
                   timing_batch=2, timing_repeats=1)


@pytest.fixture(scope="module")
def teacher_ep(micro_params, ep):
    """The teacher stage's sweep on the same layout (steps, CFG, prompts, seeds, sampler, batch)."""
    return replace(micro_params.teacher.eval, steps=ep.steps, cfg_scales=(ep.teacher_cfg_scale,),
                   prompts_per_category=ep.prompts_per_category, images_per_prompt=ep.images_per_prompt,
                   batch_size=ep.batch_size, sample=ep.sample, temperature=ep.temperature, precision=ep.precision,
                   seed=ep.seed)


@pytest.fixture(scope="module")
def stored(teacher, micro_world, teacher_ep, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "samples"
    metrics = evaluate_teacher(teacher, micro_world, teacher_ep, {}, bootstrap=10, samples_dir=folder, model_sha256=SHA)
    return folder, metrics


def test_the_teacher_stage_stores_what_the_evaluate_arms_draw(teacher, micro_world, ep, stored):
    folder, _ = stored
    store = SampleStore.load(folder)
    assert len(store) == len(ep.steps) * 2 * ep.images_per_prompt  # steps x (CFG, no CFG) x seeds
    from showo_turbo.evaluation.harness import eval_prompts_subset
    prompts = eval_prompts_subset(micro_world, ep.prompts_per_category)
    for arm in t2i_arms(teacher, teacher, ep, teacher_sha256=SHA)[:2]:  # teacher_cfg, teacher_nocfg
        for t in ep.steps:
            fresh = arm_codes(dataclasses.replace(arm, model_sha256=""), micro_world, prompts, t, ep, store)  # no hash: drawn anew
            reused = arm_codes(arm, micro_world, prompts, t, ep, store)
            assert fresh.reused == 0 and reused.reused == ep.images_per_prompt
            np.testing.assert_array_equal(decode_codes(micro_world, reused.codes), decode_codes(micro_world, fresh.codes))
    assert len(store) == len(ep.steps) * 2 * ep.images_per_prompt  # nothing was missing, nothing added


def test_evaluate_reuses_only_equal_settings_and_scores_the_same(teacher, micro_world, ep, stored):
    folder, teacher_metrics = stored
    arms = t2i_arms(teacher, teacher, ep, teacher_sha256=SHA)[:3]  # teacher_cfg, teacher_nocfg, turbo
    with_store = evaluate_t2i(arms, micro_world, ep, progress=False, store=SampleStore.load(folder))
    without = evaluate_t2i(arms, micro_world, ep, progress=False)
    for t in ep.steps:
        assert with_store["teacher_cfg"][f"steps_{t}"]["reused_samples"] is True
        assert with_store["teacher_nocfg"][f"steps_{t}"]["reused_samples"] is True
        assert with_store["turbo"][f"steps_{t}"]["reused_samples"] is False  # a student's images are never stored
        for arm in ("teacher_cfg", "teacher_nocfg", "turbo"):
            a, b = with_store[arm][f"steps_{t}"], without[arm][f"steps_{t}"]
            assert (a["score"], a["ci_low"], a["ci_high"]) == (b["score"], b["ci_low"], b["ci_high"])
        # ... and the teacher stage scored the very same images
        assert teacher_metrics["t2i"][f"steps_{t}"]["cfg_0"]["score"] == without["teacher_nocfg"][f"steps_{t}"]["score"]
    # another batch layout draws other codes (the generator runs across batches): sampled anew
    other = replace(ep, batch_size=3)
    res = evaluate_t2i(arms[:1], micro_world, other, progress=False, store=SampleStore.load(folder))
    fresh = evaluate_t2i(arms[:1], micro_world, other, progress=False)
    assert res["teacher_cfg"]["steps_1"]["reused_samples"] is False
    assert res["teacher_cfg"]["steps_1"]["score"] == fresh["teacher_cfg"]["steps_1"]["score"]


def test_the_key_holds_every_setting():
    base = dict(model_sha256=SHA, prompt_texts=["a", "b"], steps=4, cfg_scale=2.0, seed=0, batch_size=64,
                precision="fp32", device="cpu", sampler={"temperature": 4.5, "top_k": None})
    key = sample_key(**base)
    for change in ({"model_sha256": "0" * 64}, {"prompt_texts": ["b", "a"]}, {"steps": 8}, {"cfg_scale": 0.0},
                   {"seed": 1}, {"batch_size": 32}, {"precision": "bf16"}, {"device": "cuda"},
                   {"sampler": {"temperature": 1.0, "top_k": None}}):
        assert sample_key(**{**base, **change}) != key, change
    assert sample_key(**{**base, "sampler": {"top_k": None, "temperature": 4.5}}) == key  # order does not matter


def test_store_round_trip_and_refusals(tmp_path):
    store = SampleStore()
    store.put("k1", torch.arange(12).view(3, 4))
    store.put("k2", torch.zeros(2, 4, dtype=torch.long))
    path = store.save(tmp_path)
    back = SampleStore.load(tmp_path)
    assert sorted(back.codes) == ["k1", "k2"] and torch.equal(back.get("k1"), torch.arange(12).view(3, 4).int())
    assert len(SampleStore.load(tmp_path / "missing")) == 0  # no store yet: nothing to reuse
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(SampleStoreError, match="codes.safetensors: not a readable safetensors file"):
        SampleStore.load(tmp_path)
    from showo_turbo.pipeline.io import write_safetensors
    write_safetensors({"w": torch.zeros(2)}, path, {"format": "showo-turbo/model"})  # a foreign file
    with pytest.raises(SampleStoreError, match="not a showo-turbo sample store"):
        SampleStore.load(tmp_path)
