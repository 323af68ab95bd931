"""The Shapes world's section of params.yaml (`world:` with `kind: shapes`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt

from ...pipeline.params import Choice, ListOf, NonNegInt, Number, PosInt, Section
from .scenes import PALETTE, SHAPES, WorldSpec


class WorldParams(Section):
    """The Shapes world, its tokenizers and its datasets (stage `world`)."""

    kind: Choice("shapes")
    seed: NonNegInt
    image_size: Annotated[StrictInt, Field(ge=8)]
    patch_size: PosInt
    colours: ListOf(Choice(*PALETTE, what="colour"))
    shapes: ListOf(Choice(*SHAPES, what="shape"))
    object_sizes: ListOf(PosInt)
    min_gap: PosInt
    max_objects: Annotated[StrictInt, Field(ge=2, le=5)]
    heldout_caption_fraction: Annotated[Number, Field(ge=0.0, le=0.5)]
    train_t2i: PosInt
    train_mmu: PosInt
    eval_prompts_per_category: PosInt
    eval_questions_per_type: PosInt
    codebook_fit_images: PosInt
    bootstrap: NonNegInt

    def spec(self) -> WorldSpec:
        return WorldSpec(colours=self.colours, shapes=self.shapes, image_size=self.image_size,
                         patch_size=self.patch_size, object_sizes=self.object_sizes, min_gap=self.min_gap,
                         max_objects=self.max_objects)

    def check(self) -> list[tuple[str, str]]:
        if self.image_size % self.patch_size:
            return [("patch_size", f"must divide image_size ({self.image_size}), got {self.patch_size}")]
        grid = self.image_size // self.patch_size
        if max(self.object_sizes) > grid:
            return [("object_sizes", f"objects of {max(self.object_sizes)} patches do not fit a {grid}x{grid} grid")]
        s, g = min(self.object_sizes), self.min_gap
        per_row = (grid + g) // (s + g)
        if per_row * per_row < self.max_objects:
            return [("max_objects", f"{self.max_objects} objects of {s} patches with gap {g} do not fit a "
                                    f"{grid}x{grid} grid (at most {per_row * per_row})")]
        return []
