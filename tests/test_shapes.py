"""The Shapes world: rendering, layouts, captions, splits, questions."""

import collections

import numpy as np
import pytest

from showo_turbo.worlds.shapes import ShapesEval
from showo_turbo.worlds.shapes.scenes import (CATEGORIES, Obj, WorldSpec, caption_space, describe, place_objects, questions_for,
                                random_scene, relations_between, render, scene_for_prompt, shape_mask, split_captions)

SPEC = WorldSpec()


def test_render_is_flat_colours_on_black_and_matches_templates():
    o = Obj("triangle", "orange", 3, 1, 2)
    im = render((o,), SPEC)
    assert im.shape == (32, 32, 3) and im.dtype == np.uint8
    lit = im.any(-1)
    x0, y0, x1, y1 = o.box(4)
    assert (lit[y0:y1, x0:x1] == shape_mask("triangle", 12)).all()
    assert lit.sum() == shape_mask("triangle", 12).sum()
    assert {tuple(c) for c in im[lit]} == {(250, 140, 20)}


def test_shapes_differ_from_each_other():
    for size in (8, 12):
        masks = {s: shape_mask(s, size) for s in ("circle", "square", "triangle", "diamond", "cross")}
        for a in masks:
            for b in masks:
                if a < b:
                    iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                    assert iou < 0.9, (a, b, size, iou)


def test_objects_never_overlap_and_keep_the_gap():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sc = random_scene(SPEC, rng)
        assert 1 <= len(sc) <= SPEC.max_objects
        for i, a in enumerate(sc):
            assert 0 <= a.row and a.row + a.size <= 8 and 0 <= a.col and a.col + a.size <= 8
            for b in sc[i + 1:]:
                gap_r = max(b.row - (a.row + a.size), a.row - (b.row + b.size))
                gap_c = max(b.col - (a.col + a.size), a.col - (b.col + b.size))
                assert max(gap_r, gap_c) >= SPEC.min_gap


def test_caption_space_is_large_and_distinct():
    space = caption_space(SPEC)
    texts = [p.text for p in space]
    assert len(texts) == len(set(texts)) >= 3000
    counts = collections.Counter(p.category for p in space)
    assert set(counts) == set(CATEGORIES)
    assert "a red circle and a blue square" in texts
    assert "an orange circle left of a blue square" in texts
    assert "three triangles" in texts


def test_heldout_captions_are_unseen_compositions():
    space = caption_space(SPEC)
    train, held = split_captions(space, 0.1, seed=0)
    assert len(train) + len(held) == len(space)
    assert not {p.text for p in train} & {p.text for p in held}
    assert held and all(p.category in ("color_attr", "position") and p.include[0].colour for p in held)
    assert split_captions(space, 0.1, seed=0)[1] == held
    assert split_captions(space, 0.1, seed=1)[1] != held
    # Every word and every (colour, shape) pair of a held-out caption is still seen in training.
    train_pairs = {(s.colour, s.shape) for p in train for s in p.include}
    assert all((s.colour, s.shape) in train_pairs for p in held for s in p.include)


def test_scene_for_every_kind_of_prompt_satisfies_it_exactly():
    scorer = ShapesEval(SPEC)
    rng = np.random.default_rng(1)
    space = caption_space(SPEC)
    pick = [space[i] for i in rng.choice(len(space), 400, replace=False)] + [p for p in space if p.category != "position"][:60]
    for p in pick:
        sc = scene_for_prompt(p, SPEC, rng)
        assert len(sc) == sum(s.count for s in p.include)
        assert scorer.check(render(sc, SPEC), p), p.text


def test_layout_error_when_impossible():
    from showo_turbo.worlds.shapes.scenes import LayoutError
    with pytest.raises(LayoutError, match="could not place"):
        place_objects([("square", "red")] * 5, WorldSpec(object_sizes=(3,)), np.random.default_rng(0), tries=20)


def test_relations_between_boxes():
    assert relations_between((0, 0, 8, 8), (16, 0, 24, 8)) == {"left of"}
    assert relations_between((16, 0, 24, 8), (0, 0, 8, 8)) == {"right of"}
    assert relations_between((0, 16, 8, 24), (0, 0, 8, 8)) == {"below"}
    assert relations_between((0, 0, 8, 8), (1, 1, 9, 9)) == set()  # within the margin


def test_questions_have_correct_answers():
    rng = np.random.default_rng(2)
    sc = (Obj("circle", "red", 2, 0, 0), Obj("circle", "blue", 2, 0, 5), Obj("square", "green", 2, 5, 0))
    qs = {q.kind: q for q in questions_for(sc, SPEC, rng)}
    assert qs["describe"].answer == "a red circle and a green square and a blue circle"
    assert qs["colour"].answer == "the square is green"  # the only unique shape
    for _ in range(30):
        q = questions_for(sc, SPEC, rng)[0]
        shape = q.question.split()[2][:-1]
        n = {"circle": 2, "square": 1}.get(shape, 0)
        assert q.answer.split()[0] == ["zero", "one", "two"][n]
    rel = [q for q in questions_for(sc, SPEC, rng) if q.kind == "relation"]
    assert rel
    for q in rel:  # e.g. "what is left of the blue circle ?" -> "a red circle"
        words = q.question.split()
        assert q.answer in {"a red circle", "a blue circle", "a green square"}
        assert q.answer != f"a {words[-3]} {words[-2]}"


def test_describe_is_in_reading_order():
    sc = (Obj("square", "white", 2, 0, 6), Obj("diamond", "cyan", 2, 4, 0))
    assert describe(sc) == "a cyan diamond and a white square"
