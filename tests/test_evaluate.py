"""ShapesEval on hand-built images: one passing and one failing image per category and rule."""

import numpy as np
import pytest

from showo_turbo.worlds.shapes import ShapesEval
from showo_turbo.worlds.shapes.scenes import Obj, ObjectSpec, Prompt, WorldSpec, render

SPEC = WorldSpec()
EVAL = ShapesEval(SPEC)


def img(*objs: Obj) -> np.ndarray:
    return render(tuple(objs), SPEC)


def prompt(category, *include, exclude=()):
    return Prompt(category, "test", tuple(include), tuple(exclude))


# Hand-placed objects (row, col in patches on the 8x8 grid).
RED_CIRCLE_LEFT = Obj("circle", "red", 2, 3, 0)
BLUE_SQUARE_RIGHT = Obj("square", "blue", 2, 3, 5)
GREEN_TRIANGLE_TOP = Obj("triangle", "green", 3, 0, 3)
WHITE_DIAMOND_BOTTOM = Obj("diamond", "white", 2, 6, 3)

CASES = [
    # category, prompt, passing image, failing image
    ("single_object", prompt("single_object", ObjectSpec("circle")),
     img(RED_CIRCLE_LEFT), img(BLUE_SQUARE_RIGHT)),
    ("two_object", prompt("two_object", ObjectSpec("circle"), ObjectSpec("square")),
     img(RED_CIRCLE_LEFT, BLUE_SQUARE_RIGHT), img(RED_CIRCLE_LEFT, GREEN_TRIANGLE_TOP)),
    ("counting", prompt("counting", ObjectSpec("circle", count=2), exclude=(ObjectSpec("circle", count=3),)),
     img(RED_CIRCLE_LEFT, Obj("circle", "blue", 2, 3, 5)),
     img(RED_CIRCLE_LEFT, Obj("circle", "blue", 2, 3, 5), Obj("circle", "white", 2, 0, 3))),  # three, not two
    ("colors", prompt("colors", ObjectSpec("circle", "red")),
     img(RED_CIRCLE_LEFT), img(Obj("circle", "green", 2, 3, 0))),
    ("position", prompt("position", ObjectSpec("square"), ObjectSpec("circle", relation="left of", anchor=0)),
     img(RED_CIRCLE_LEFT, BLUE_SQUARE_RIGHT), img(Obj("circle", "red", 2, 3, 5), Obj("square", "blue", 2, 3, 0))),
    ("color_attr", prompt("color_attr", ObjectSpec("circle", "red"), ObjectSpec("square", "blue")),
     img(RED_CIRCLE_LEFT, BLUE_SQUARE_RIGHT),
     img(Obj("circle", "blue", 2, 3, 0), Obj("square", "red", 2, 3, 5))),  # colours swapped
]


@pytest.mark.parametrize("category,p,good,bad", CASES, ids=[c[0] for c in CASES])
def test_category_pass_and_fail(category, p, good, bad):
    assert EVAL.check(good, p)
    assert not EVAL.check(bad, p)
    assert not EVAL.check(np.zeros_like(good), p)


def test_counting_too_few_fails():
    p = prompt("counting", ObjectSpec("triangle", count=3), exclude=(ObjectSpec("triangle", count=4),))
    two = img(Obj("triangle", "red", 2, 0, 0), Obj("triangle", "red", 2, 0, 4))
    three = img(Obj("triangle", "red", 2, 0, 0), Obj("triangle", "red", 2, 0, 4), Obj("triangle", "cyan", 3, 4, 2))
    assert not EVAL.check(two, p)
    assert EVAL.check(three, p)


def test_position_follows_geneval_centre_offset_rule():
    # Same row: "left of" holds, "above" does not. GenEval's rule gives both on a 45-degree
    # diagonal and only the dominant direction on a steeper one.
    p_left = prompt("position", ObjectSpec("square"), ObjectSpec("circle", relation="left of", anchor=0))
    p_above = prompt("position", ObjectSpec("square"), ObjectSpec("circle", relation="above", anchor=0))
    side = img(RED_CIRCLE_LEFT, BLUE_SQUARE_RIGHT)
    assert EVAL.check(side, p_left) and not EVAL.check(side, p_above)
    diagonal = img(Obj("circle", "red", 2, 0, 0), Obj("square", "blue", 2, 4, 4))
    assert EVAL.check(diagonal, p_left) and EVAL.check(diagonal, p_above)
    steep = img(Obj("circle", "red", 2, 0, 2), Obj("square", "blue", 2, 4, 4))  # centre offset (-8, -16) px
    assert EVAL.check(steep, p_above) and not EVAL.check(steep, p_left)
    stacked = img(Obj("circle", "red", 2, 0, 3), Obj("square", "blue", 2, 4, 3))
    assert EVAL.check(stacked, p_above) and not EVAL.check(stacked, p_left)


def test_position_with_colours_needs_the_right_colours():
    p = prompt("position", ObjectSpec("square", "blue"), ObjectSpec("circle", "red", relation="left of", anchor=0))
    assert EVAL.check(img(RED_CIRCLE_LEFT, BLUE_SQUARE_RIGHT), p)
    assert not EVAL.check(img(Obj("circle", "green", 2, 3, 0), BLUE_SQUARE_RIGHT), p)


def test_detection_finds_shapes_colours_and_boxes():
    dets = EVAL.detect(img(RED_CIRCLE_LEFT, GREEN_TRIANGLE_TOP, WHITE_DIAMOND_BOTTOM, BLUE_SQUARE_RIGHT))
    got = sorted((d.shape, d.colour, d.box) for d in dets)
    want = sorted((o.shape, o.colour, o.box(4)) for o in (RED_CIRCLE_LEFT, GREEN_TRIANGLE_TOP, WHITE_DIAMOND_BOTTOM, BLUE_SQUARE_RIGHT))
    assert got == want


def test_specks_and_junk_are_ignored():
    image = img(RED_CIRCLE_LEFT)
    image[0, 0] = image[0, 1] = (40, 80, 240)  # a 2-pixel blue speck
    image[28:32, 20:32] = (240, 225, 30)  # a 4x12 yellow bar: wrong aspect, not a shape
    dets = EVAL.detect(image)
    assert [(d.shape, d.colour) for d in dets] == [("circle", "red")]


def test_half_drawn_shape_is_not_a_shape():
    image = img(Obj("circle", "red", 2, 3, 0))
    image[12:20, 4:8] = 0  # erase the right half
    assert EVAL.detect(image) == []


def test_noisy_colour_still_matches_nearest_palette_colour():
    image = img(RED_CIRCLE_LEFT).astype(int)
    lit = image.max(-1) > 0
    image[lit] += np.array([10, -10, 8])
    assert EVAL.check(np.clip(image, 0, 255).astype(np.uint8), prompt("colors", ObjectSpec("circle", "red")))


def test_score_is_mean_of_category_means_with_interval():
    p1 = prompt("single_object", ObjectSpec("circle"))
    p2 = prompt("colors", ObjectSpec("circle", "red"))
    images = [img(RED_CIRCLE_LEFT)] * 3 + [img(BLUE_SQUARE_RIGHT)] + [img(RED_CIRCLE_LEFT)]
    prompts = [p1, p1, p1, p1, p2]
    res = EVAL.score(images, prompts, bootstrap=500)
    assert res.categories == {"single_object": 0.75, "colors": 1.0}
    assert res.score == pytest.approx(0.875)
    assert res.ci_low <= res.score <= res.ci_high
    assert res.ci_low < res.ci_high  # single_object varies under resampling


def test_score_rejects_length_mismatch():
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        EVAL.score([img(), img()], [prompt("single_object", ObjectSpec("circle"))])
