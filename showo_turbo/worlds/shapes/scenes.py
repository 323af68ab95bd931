"""The Shapes world: seeded scenes of flat coloured shapes on black, their captions and questions.

Everything here is exact: a scene is a list of objects on the image tokenizer's patch grid, the
renderer draws it with fixed templates, and captions are built from a structured `Prompt` that the
scorer (`scorer.ShapesEval`) checks with GenEval's rules. Objects never overlap and keep at
least `min_gap` empty patches between them, so connected components recover them exactly.

Caption categories follow GenEval: single_object, two_object, counting, colors, position,
color_attr. Position captions name colours too half of the time ("a red circle left of a blue
square"), which is what makes the caption space large (thousands) while the vocabulary stays small.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

# RGB values are far apart so that nearest-colour assignment is unambiguous.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (40, 190, 40), "blue": (40, 80, 240), "yellow": (240, 225, 30),
    "cyan": (30, 220, 230), "magenta": (220, 40, 220), "orange": (250, 140, 20), "white": (240, 240, 240),
    "purple": (120, 50, 170), "pink": (250, 160, 200), "brown": (130, 80, 30), "gray": (125, 125, 125),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
CATEGORIES: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")
QUESTION_TYPES: tuple[str, ...] = ("count", "colour", "relation", "describe")
POSITION_THRESHOLD = 0.1  # GenEval's centre-offset margin, as a fraction of the two box sizes


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[0] in "aeiou" else "a"


def plural(shape: str) -> str:
    return shape + "es" if shape.endswith("s") else shape + "s"


@lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean [size, size] template of `shape` filling a size x size pixel box."""
    c = np.arange(size) + 0.5  # pixel centres
    y, x = np.meshgrid(c, c, indexing="ij")
    h = size / 2
    dx, dy = np.abs(x - h), np.abs(y - h)
    if shape == "square":
        m = np.ones((size, size), bool)
    elif shape == "circle":
        m = dx**2 + dy**2 <= h**2
    elif shape == "diamond":
        m = dx + dy <= h
    elif shape == "triangle":  # apex up, base on the bottom row
        m = dx <= (y + 0.5) / 2
    elif shape == "cross":
        m = (dx <= size / 6) | (dy <= size / 6)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    m.setflags(write=False)
    return m


@dataclass(frozen=True)
class Obj:
    """One object: shape, colour, side length in patches and top-left corner in patches."""

    shape: str
    colour: str
    size: int
    row: int
    col: int

    def box(self, patch: int) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1), x1/y1 exclusive."""
        return (self.col * patch, self.row * patch, (self.col + self.size) * patch, (self.row + self.size) * patch)

    def phrase(self) -> str:
        return f"{article(self.colour)} {self.colour} {self.shape}"


Scene = tuple[Obj, ...]


@dataclass(frozen=True)
class ObjectSpec:
    """One GenEval 'include'/'exclude' clause: at least `count` objects of `shape` (and `colour`),
    each `relation` every object of include-group `anchor`."""

    shape: str
    colour: str | None = None
    count: int = 1
    relation: str | None = None
    anchor: int | None = None


@dataclass(frozen=True)
class Prompt:
    category: str
    text: str
    include: tuple[ObjectSpec, ...]
    exclude: tuple[ObjectSpec, ...] = ()

    def to_dict(self) -> dict:
        return {
            "category": self.category,
            "text": self.text,
            "include": [vars(s) for s in self.include],
            "exclude": [vars(s) for s in self.exclude],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Prompt":
        return cls(d["category"], d["text"], tuple(ObjectSpec(**s) for s in d["include"]),
                   tuple(ObjectSpec(**s) for s in d.get("exclude", ())))


@dataclass(frozen=True)
class Question:
    kind: str
    question: str
    answer: str


@dataclass(frozen=True)
class WorldSpec:
    """What the world can contain (a view of `params.WorldParams`)."""

    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
    image_size: int = 32
    patch_size: int = 4
    object_sizes: tuple[int, ...] = (2, 3)
    min_gap: int = 1
    max_objects: int = 4

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def palette(self) -> np.ndarray:
        return np.array([PALETTE[c] for c in self.colours], np.uint8)


# --------------------------------------------------------------------------------------------
# Geometry: GenEval's relative-position rule on pixel boxes.


def relations_between(box_a: Sequence[float], box_b: Sequence[float], threshold: float = POSITION_THRESHOLD) -> set[str]:
    """Relations of box A relative to box B by GenEval's rule: centre offset, shrunk by
    `threshold` x the summed box sizes per axis, must point mostly along one direction."""
    a, b = np.asarray(box_a, float), np.asarray(box_b, float)
    offset = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    dims = (a[2:] - a[:2]) + (b[2:] - b[:2])
    revised = np.maximum(np.abs(offset) - threshold * dims, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rel = set()
    if dx < -0.5:
        rel.add("left of")
    if dx > 0.5:
        rel.add("right of")
    if dy < -0.5:
        rel.add("above")
    if dy > 0.5:
        rel.add("below")
    return rel


# --------------------------------------------------------------------------------------------
# Rendering.


def render(scene: Scene, spec: WorldSpec) -> np.ndarray:
    """uint8 [H, W, 3] image of `scene`: flat colours on black."""
    img = np.zeros((spec.image_size, spec.image_size, 3), np.uint8)
    for o in scene:
        x0, y0, x1, y1 = o.box(spec.patch_size)
        img[y0:y1, x0:x1][shape_mask(o.shape, x1 - x0)] = PALETTE[o.colour]
    return img


def render_batch(scenes: Sequence[Scene], spec: WorldSpec) -> np.ndarray:
    return np.stack([render(s, spec) for s in scenes]) if scenes else np.zeros((0, spec.image_size, spec.image_size, 3), np.uint8)


# --------------------------------------------------------------------------------------------
# Captions: the whole caption space, enumerated.


def _spec_phrase(s: ObjectSpec) -> str:
    words = f"{s.colour} {s.shape}" if s.colour else s.shape
    return f"{article(words)} {words}"


def caption_space(spec: WorldSpec) -> list[Prompt]:
    """Every prompt the world can ask for, in a fixed order."""
    out: list[Prompt] = []
    S, C = spec.shapes, spec.colours
    for s in S:
        out.append(Prompt("single_object", _spec_phrase(ObjectSpec(s)), (ObjectSpec(s),)))
    for a, b in itertools.permutations(S, 2):
        A, B = ObjectSpec(a), ObjectSpec(b)
        out.append(Prompt("two_object", f"{_spec_phrase(A)} and {_spec_phrase(B)}", (A, B)))
    for n in range(2, spec.max_objects + 1):
        for s in S:
            out.append(Prompt("counting", f"{NUMBER_WORDS[n]} {plural(s)}", (ObjectSpec(s, count=n),), (ObjectSpec(s, count=n + 1),)))
    for c in C:
        for s in S:
            out.append(Prompt("colors", _spec_phrase(ObjectSpec(s, c)), (ObjectSpec(s, c),)))
    # Position: "A rel B" -> include [B, A rel group 0], as GenEval's metadata does.
    for a, b in itertools.permutations(S, 2):
        for rel in RELATIONS:
            for ca, cb in itertools.chain([(None, None)], itertools.permutations(C, 2)):
                B, A = ObjectSpec(b, cb), ObjectSpec(a, ca, relation=rel, anchor=0)
                out.append(Prompt("position", f"{_spec_phrase(A)} {rel} {_spec_phrase(B)}", (B, A)))
    for a, b in itertools.permutations(S, 2):
        for ca, cb in itertools.permutations(C, 2):
            A, B = ObjectSpec(a, ca), ObjectSpec(b, cb)
            out.append(Prompt("color_attr", f"{_spec_phrase(A)} and {_spec_phrase(B)}", (A, B)))
    return out


def split_captions(prompts: Sequence[Prompt], heldout_fraction: float, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """(train, heldout). Only compositional captions (colour attribution, coloured position) are
    held out, so every held-out caption is a composition never seen in training; the small
    categories are shared and are held out by scene instead."""
    compositional = [i for i, p in enumerate(prompts) if _is_compositional(p)]
    rng = np.random.default_rng([seed, 1])
    n_hold = int(round(heldout_fraction * len(compositional)))
    held = set(rng.permutation(compositional)[:n_hold].tolist())
    return [p for i, p in enumerate(prompts) if i not in held], [p for i, p in enumerate(prompts) if i in held]


def _is_compositional(p: Prompt) -> bool:
    return p.category == "color_attr" or (p.category == "position" and p.include[0].colour is not None)


# --------------------------------------------------------------------------------------------
# Scene sampling.


class LayoutError(RuntimeError):
    pass


def _free(occupied: np.ndarray, r: int, c: int, size: int, gap: int) -> bool:
    return not occupied[max(r - gap, 0): r + size + gap, max(c - gap, 0): c + size + gap].any()


def place_objects(items: Sequence[tuple[str, str]], spec: WorldSpec, rng: np.random.Generator,
                  constraint=None, tries: int = 200) -> Scene:
    """Place (shape, colour) items at random sizes/positions without overlap (gap `min_gap`).
    `constraint(scene) -> bool` is checked on the finished layout (rejection sampling)."""
    g = spec.grid
    sizes = sorted(spec.object_sizes)
    for attempt in range(tries):
        # Shrink towards the smallest size when big layouts keep failing.
        pool = sizes if attempt < tries // 2 else sizes[:1]
        occupied = np.zeros((g, g), bool)
        objs = []
        for shape, colour in items:
            size = int(rng.choice(pool))
            cells = [(r, c) for r in range(g - size + 1) for c in range(g - size + 1)
                     if _free(occupied, r, c, size, spec.min_gap)]
            if not cells:
                break
            r, c = cells[rng.integers(len(cells))]
            occupied[r:r + size, c:c + size] = True
            objs.append(Obj(shape, colour, size, r, c))
        else:
            scene = tuple(objs)
            if constraint is None or constraint(scene):
                return scene
    raise LayoutError(f"could not place {list(items)} on a {g}x{g} grid in {tries} tries")


def scene_for_prompt(prompt: Prompt, spec: WorldSpec, rng: np.random.Generator) -> Scene:
    """A scene that satisfies `prompt` exactly, with nothing else in it. Unnamed colours are random."""
    def colour(c):
        return c if c is not None else str(rng.choice(spec.colours))

    items = [(s.shape, colour(s.colour)) for s in prompt.include for _ in range(s.count)]
    constraint = None
    if prompt.category == "position":
        rel = prompt.include[1].relation
        constraint = lambda sc: rel in relations_between(sc[1].box(spec.patch_size), sc[0].box(spec.patch_size))  # noqa: E731
    return place_objects(items, spec, rng, constraint)


def random_scene(spec: WorldSpec, rng: np.random.Generator) -> Scene:
    n = int(rng.integers(1, spec.max_objects + 1))
    items = [(str(rng.choice(spec.shapes)), str(rng.choice(spec.colours))) for _ in range(n)]
    return place_objects(items, spec, rng)


# --------------------------------------------------------------------------------------------
# Questions (MMU) and the canonical description.


def reading_order(scene: Scene) -> list[Obj]:
    """Objects left to right, then top to bottom, by box centre."""
    return sorted(scene, key=lambda o: (2 * o.col + o.size, 2 * o.row + o.size))


def describe(scene: Scene) -> str:
    """Canonical caption of a scene: its objects in reading order."""
    return " and ".join(o.phrase() for o in reading_order(scene))


def questions_for(scene: Scene, spec: WorldSpec, rng: np.random.Generator) -> list[Question]:
    """All questions of every type with an unambiguous answer for this scene (one per type,
    chosen at random where several are possible)."""
    out: list[Question] = []
    # count: any shape of the world, including absent ones.
    s = str(rng.choice(spec.shapes))
    n = sum(o.shape == s for o in scene)
    out.append(Question("count", f"how many {plural(s)} are there ?", f"{NUMBER_WORDS[n]} {s if n == 1 else plural(s)}"))
    # colour of a named shape, when exactly one object has that shape.
    unique = [o for o in scene if sum(p.shape == o.shape for p in scene) == 1]
    if unique:
        o = unique[rng.integers(len(unique))]
        out.append(Question("colour", f"what colour is the {o.shape} ?", f"the {o.shape} is {o.colour}"))
    # relation: the one object that is `rel` of a uniquely described anchor.
    cands = []
    for anchor in scene:
        if sum((p.shape, p.colour) == (anchor.shape, anchor.colour) for p in scene) != 1:
            continue
        for rel in RELATIONS:
            hits = [o for o in scene if o is not anchor and rel in relations_between(o.box(spec.patch_size), anchor.box(spec.patch_size))]
            if len(hits) == 1:
                cands.append((anchor, rel, hits[0]))
    if cands:
        anchor, rel, hit = cands[rng.integers(len(cands))]
        out.append(Question("relation", f"what is {rel} the {anchor.colour} {anchor.shape} ?", hit.phrase()))
    out.append(Question("describe", "describe the image .", describe(scene)))
    return out


def scene_key(scene: Scene) -> str:
    """Stable identity of a scene's content (used to keep evaluation scenes out of training)."""
    return hashlib.sha1(repr(sorted((o.shape, o.colour, o.size, o.row, o.col) for o in scene)).encode()).hexdigest()[:16]


def vocabulary(spec: WorldSpec) -> list[str]:
    """Every word that captions, questions and answers can use, in a fixed order."""
    words: list[str] = ["a", "an", "and", "the", "is", "are", "there", "how", "many", "what", "colour",
                        "describe", "image", "?", ".", "of", "left", "right", "above", "below"]
    words += list(NUMBER_WORDS[: spec.max_objects + 2])
    for s in spec.shapes:
        words += [s, plural(s)]
    words += list(spec.colours)
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


__all__ = [
    "PALETTE", "SHAPES", "CATEGORIES", "RELATIONS", "QUESTION_TYPES", "Obj", "Scene", "ObjectSpec", "Prompt",
    "Question", "WorldSpec", "shape_mask", "render", "render_batch", "caption_space", "split_captions",
    "scene_for_prompt", "random_scene", "questions_for", "describe", "relations_between", "vocabulary",
    "LayoutError", "scene_key", "plural",
]
