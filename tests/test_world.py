"""The world stage's library side: datasets, splits, reload, refusals, sanity metrics."""

import shutil

import numpy as np
import pytest
import torch

from showo_turbo.worlds.shapes import ShapesEval
from showo_turbo.pipeline.io import load_json
from showo_turbo.worlds.shapes.scenes import CATEGORIES, QUESTION_TYPES, caption_space, render_batch, scene_key
from showo_turbo.worlds.common import load_tensors
from showo_turbo.worlds import WorldFileError
from showo_turbo.worlds.shapes.world import (ShapesWorld, check_world_metrics, mismatched_prompts,
                               world_metrics)


def test_datasets_have_the_declared_shapes(micro_world, micro_params):
    wp = micro_params.world
    t2i, mmu = micro_world.t2i_train(), micro_world.mmu_train()
    lay, lengths = micro_world.layout, micro_world.summary["lengths"]
    assert t2i["codes"].shape == (wp.train_t2i, 8, 8) and t2i["caption"].shape == (wp.train_t2i, lengths["caption"])
    assert mmu["codes"].shape == (wp.train_mmu, 8, 8) and mmu["answer"].shape == (wp.train_mmu, lengths["answer"])
    assert int(t2i["codes"].max()) < lay.codebook_size
    # Padding is Show-o's PAD, after each sequence's true length.
    i = int(t2i["caption_len"].argmin())
    assert (t2i["caption"][i, t2i["caption_len"][i]:] == lay.pad_id).all()
    assert (t2i["caption"][i, :t2i["caption_len"][i]] < lay.text_size).all()
    assert set(mmu["qtype"].tolist()) == set(range(len(QUESTION_TYPES)))


def test_training_codes_decode_to_their_captions(micro_world):
    """Independent check of the data: decoded training images satisfy their captions."""
    t2i = micro_world.t2i_train()
    all_prompts = caption_space(micro_world.spec)
    scorer = ShapesEval(micro_world.spec)
    images = micro_world.vq.decode(t2i["codes"][:200].numpy())
    for k in range(200):
        p = all_prompts[int(t2i["prompt_id"][k])]
        n = int(t2i["caption_len"][k])
        assert micro_world.text.decode(t2i["caption"][k, :n].tolist()) == p.text
        assert scorer.check(images[k], p), p.text


def test_eval_scenes_never_appear_in_training(micro_world):
    _, ev = micro_world.eval_t2i()
    _, evq = micro_world.eval_mmu()
    held = {micro_world.vq.encode(render_batch([s], micro_world.spec))[0].tobytes() for s in ev + evq}
    train = {c.numpy().astype(np.int64).tobytes() for c in micro_world.t2i_train()["codes"]}
    train |= {c.numpy().astype(np.int64).tobytes() for c in micro_world.mmu_train()["codes"]}
    assert not held & train
    assert len({scene_key(s) for s in ev}) > 0.9 * len(ev)


def test_eval_sets_are_balanced(micro_world, micro_params):
    prompts, _ = micro_world.eval_t2i()
    qs, _ = micro_world.eval_mmu()
    n = micro_params.world.eval_prompts_per_category
    assert [sum(p.category == c for p in prompts) for c in CATEGORIES] == [n] * 6
    assert sorted({q.kind for q in qs}) == sorted(QUESTION_TYPES)
    heldout = {p["text"] for p in load_json(micro_world.root / "captions.json")["heldout"]}
    held = {p.text for p in prompts} & heldout
    assert held  # some evaluation captions were never seen in training


def test_world_reloads_identically(micro_world):
    w = ShapesWorld.load(micro_world.root)
    assert w.layout == micro_world.layout and w.params == micro_world.params
    assert w.text.encode("a red circle") == micro_world.text.encode("a red circle")


def test_same_seed_same_world(micro_world, micro_params, tmp_path):
    from showo_turbo.worlds.shapes import build_world
    again = build_world(micro_params.world, tmp_path)
    for name in ("t2i_train", "mmu_train"):
        a, b = getattr(micro_world, name)(), getattr(again, name)()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_world_metrics_meet_the_stage_checks(micro_world):
    m = world_metrics(micro_world)
    se = m["shapes_eval"]
    assert se["ground_truth"]["score"] >= 0.99 and se["reconstructed"]["score"] >= 0.97
    assert se["mismatched"]["score"] <= 0.2 and se["blank"]["score"] == 0
    assert set(CATEGORIES) <= set(se["ground_truth"])
    check_world_metrics(m)
    m["shapes_eval"]["mismatched"]["score"] = 0.5
    with pytest.raises(RuntimeError, match=r"shapes_eval.mismatched.score = 0.500, needs <= 0.2"):
        check_world_metrics(m)


def test_mismatched_prompts_change_caption_within_category(micro_world):
    prompts, _ = micro_world.eval_t2i()
    for p, q in zip(prompts, mismatched_prompts(prompts)):
        assert p.category == q.category and p.text != q.text


def test_corrupt_or_foreign_dataset_files_are_refused(micro_world, tmp_path):
    src = micro_world.root / "t2i_train.safetensors"
    bad = tmp_path / "t2i_train.safetensors"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(WorldFileError, match="t2i_train.safetensors"):
        load_tensors(bad, "showo-turbo/world/1/t2i")
    shutil.copy(micro_world.root / "mmu_train.safetensors", bad)
    with pytest.raises(WorldFileError, match="expected 'showo-turbo/world/1/t2i'"):
        load_tensors(bad, "showo-turbo/world/1/t2i")
    with pytest.raises(WorldFileError, match="not found"):
        load_tensors(tmp_path / "nope.safetensors", "showo-turbo/world/1/t2i")
    (tmp_path / "world.json").write_text('{"format": "something-else"}')
    with pytest.raises(WorldFileError, match="world.json: format 'something-else'"):
        ShapesWorld.load(tmp_path)
