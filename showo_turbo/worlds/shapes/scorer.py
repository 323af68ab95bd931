"""ShapesEval: a programmatic GenEval for the Shapes world.

From pixels only: (1) assign every non-black pixel to its nearest palette colour, (2) find connected
components per colour and drop specks, (3) classify each component's shape by IoU against the
world's rendered templates, with a junk filter (box size within the world's sizes, roughly square),
(4) apply GenEval's rules to the prompt's include/exclude clauses: presence (>= count), exact count
(an exclude clause at N+1), colour, position by GenEval's centre-offset rule, colour attribution.
The score is the mean of the six category accuracies, as GenEval reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from .scenes import CATEGORIES, Prompt, WorldSpec, relations_between, shape_mask


@dataclass(frozen=True)
class Detection:
    shape: str
    colour: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    iou: float


@dataclass
class ShapesEvalResult:
    score: float
    categories: dict[str, float]
    counts: dict[str, int]
    ci_low: float
    ci_high: float
    correct: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"score": self.score, "ci_low": self.ci_low, "ci_high": self.ci_high,
                **{c: self.categories[c] for c in self.categories}, "n_images": int(sum(self.counts.values()))}


class ShapesEval:
    """Scores images against `Prompt`s with GenEval's rules. Constants are fixed so that
    scores stay comparable across runs; change them only deliberately."""

    def __init__(self, spec: WorldSpec, min_area: int = 6, shape_iou: float = 0.6, black_level: int = 40,
                 size_tolerance: float = 0.25, max_aspect: float = 1.34):
        self.spec = spec
        self.palette = spec.palette.astype(np.int32)
        self.min_area = min_area
        self.shape_iou = shape_iou
        self.black_level = black_level
        px = [s * spec.patch_size for s in spec.object_sizes]
        self.min_side, self.max_side = min(px) * (1 - size_tolerance), max(px) * (1 + size_tolerance)
        self.max_aspect = max_aspect

    # 1-3: objects from pixels.
    def detect(self, image: np.ndarray) -> list[Detection]:
        img = np.asarray(image).astype(np.int32)
        lit = img.max(axis=-1) > self.black_level
        dist = ((img[:, :, None, :] - self.palette[None, None]) ** 2).sum(-1)
        label = np.where(lit, dist.argmin(-1), -1)
        found = []
        for ci, colour in enumerate(self.spec.colours):
            comps, n = ndimage.label(label == ci, structure=np.ones((3, 3)))
            for k, sl in enumerate(ndimage.find_objects(comps), start=1):
                mask = comps[sl] == k
                if mask.sum() < self.min_area:
                    continue  # speck
                det = self._classify(mask, colour, sl)
                if det is not None:
                    found.append(det)
        return found

    def _classify(self, mask: np.ndarray, colour: str, sl) -> Detection | None:
        h, w = mask.shape
        if not (self.min_side <= h <= self.max_side and self.min_side <= w <= self.max_side):
            return None
        if max(h, w) / min(h, w) > self.max_aspect:
            return None
        side = max(h, w)
        padded = np.zeros((side, side), bool)
        padded[:h, :w] = mask
        best, best_iou = None, 0.0
        for shape in self.spec.shapes:
            t = shape_mask(shape, side)
            iou = float((t & padded).sum() / (t | padded).sum())
            if iou > best_iou:
                best, best_iou = shape, iou
        if best_iou < self.shape_iou:
            return None
        y, x = sl
        return Detection(best, colour, (x.start, y.start, x.stop, y.stop), best_iou)

    # 4: GenEval's rules.
    def check(self, image: np.ndarray, prompt: Prompt) -> bool:
        return self.check_detections(self.detect(image), prompt)

    @staticmethod
    def check_detections(dets: Sequence[Detection], prompt: Prompt) -> bool:
        def matching(spec):
            return [d for d in dets if d.shape == spec.shape and (spec.colour is None or d.colour == spec.colour)]

        groups: list[list[Detection] | None] = []
        ok = True
        for spec in prompt.include:
            found = matching(spec)
            matched = len(found) >= spec.count
            if matched and spec.relation is not None:
                anchors = groups[spec.anchor] if spec.anchor is not None and spec.anchor < len(groups) else None
                matched = anchors is not None and all(
                    spec.relation in relations_between(d.box, a.box) for d in found for a in anchors)
            groups.append(found if matched else None)
            ok &= matched
        for spec in prompt.exclude:
            if len(matching(spec)) >= spec.count:
                ok = False
        return ok

    def score(self, images: np.ndarray | Sequence[np.ndarray], prompts: Sequence[Prompt],
              bootstrap: int = 1000, seed: int = 0) -> ShapesEvalResult:
        """Mean of per-category accuracies with a bootstrap 95% interval (images resampled within
        each category)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        correct = np.array([self.check(im, p) for im, p in zip(images, prompts)], bool)
        cats = [c for c in CATEGORIES if any(p.category == c for p in prompts)]
        idx = {c: np.array([i for i, p in enumerate(prompts) if p.category == c]) for c in cats}
        per = {c: float(correct[idx[c]].mean()) for c in cats}
        score = float(np.mean(list(per.values()))) if per else 0.0
        rng = np.random.default_rng(seed)
        boots = np.zeros(bootstrap)
        for c in cats:
            vals = correct[idx[c]].astype(float)
            boots += vals[rng.integers(0, len(vals), (bootstrap, len(vals)))].mean(1)
        boots /= max(len(cats), 1)
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if bootstrap else (score, score))
        return ShapesEvalResult(score, per, {c: len(idx[c]) for c in cats}, float(lo), float(hi), correct)
