"""The Shapes world's section of params.yaml (`world:` with `kind: shapes`)."""

from __future__ import annotations

from dataclasses import dataclass

from ...params import param
from .scenes import PALETTE, SHAPES, WorldSpec


@dataclass(frozen=True)
class WorldParams:
    """The Shapes world, its tokenizers and its datasets (stage `world`)."""

    kind: str = param("shapes", choices=("shapes",), doc="the world plug-in (showo_turbo.worlds)")
    seed: int = param(0, min=0, doc="seed of every split and sample")
    image_size: int = param(32, min=8, doc="image side in pixels")
    patch_size: int = param(4, min=1, doc="image tokenizer patch side in pixels; objects snap to this grid")
    colours: tuple[str, ...] = param(("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white"),
                                  choices=tuple(PALETTE), doc="palette subset")
    shapes: tuple[str, ...] = param(("circle", "square", "triangle", "diamond"), choices=SHAPES)
    object_sizes: tuple[int, ...] = param((2, 3), min=1, doc="object sides in patches")
    min_gap: int = param(1, min=1, doc="empty patches between objects (so components never merge)")
    max_objects: int = param(4, min=2, max=5, doc="most objects in a scene (counting goes 2..max)")
    heldout_caption_fraction: float = param(0.1, min=0.0, max=0.5, doc="compositional captions kept out of training")
    train_t2i: int = param(100_000, min=1, doc="T2I training examples")
    train_mmu: int = param(50_000, min=1, doc="MMU training examples")
    eval_prompts_per_category: int = param(100, min=1)
    eval_questions_per_type: int = param(100, min=1)
    codebook_fit_images: int = param(5_000, min=1, doc="training images the patch VQ is fitted on")
    bootstrap: int = param(1000, min=0, doc="bootstrap resamples for ShapesEval's 95% interval")

    def spec(self) -> WorldSpec:
        return WorldSpec(colours=self.colours, shapes=self.shapes, image_size=self.image_size,
                         patch_size=self.patch_size, object_sizes=self.object_sizes, min_gap=self.min_gap,
                         max_objects=self.max_objects)

    def check(self) -> list[tuple[str, str]]:
        """Cross-field problems as (key, message)."""
        errs = []
        if self.image_size % self.patch_size:
            errs.append(("patch_size", f"must divide image_size ({self.image_size}), got {self.patch_size}"))
            return errs
        grid = self.image_size // self.patch_size
        if max(self.object_sizes) > grid:
            errs.append(("object_sizes", f"objects of {max(self.object_sizes)} patches do not fit a {grid}x{grid} grid"))
        s, g = min(self.object_sizes), self.min_gap
        per_row = (grid + g) // (s + g)
        if per_row * per_row < self.max_objects:
            errs.append(("max_objects", f"{self.max_objects} objects of {s} patches with gap {g} do not fit a "
                                        f"{grid}x{grid} grid (at most {per_row * per_row})"))
        return errs
