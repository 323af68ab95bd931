"""Real Show-o's section of params.yaml (`world:` with `kind: showo`). Every path is a local file
or folder (under inputs/ in a params file): nothing is fetched from a hub."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StrictInt, StrictStr

from ...pipeline.params import Choice, NonNegInt, PosInt, Section


class ShowoWorldParams(Section):
    """Show-o's tokenizers and the prompt / question files (stage `world`); params.yaml's comments say what each is."""

    # The files and folders it reads: in a params file they must lie under inputs/ (pipeline.params).
    INPUT_KEYS: ClassVar[tuple[str, ...]] = ("tokenizer_dir", "magvit_dir", "t2i_train", "t2i_eval", "mmu_train", "mmu_eval")

    kind: Choice("showo")
    tokenizer_dir: StrictStr
    magvit_dir: StrictStr
    image_size: Annotated[StrictInt, Field(ge=16)]
    t2i_train: StrictStr
    t2i_eval: StrictStr
    mmu_train: StrictStr
    mmu_eval: StrictStr
    caption_tokens: PosInt
    answer_tokens: PosInt
    encode_batch: PosInt
    device: Choice("cpu", "cuda")
    bootstrap: NonNegInt

    def input_paths(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.INPUT_KEYS}

    def check(self) -> list[tuple[str, str]]:
        for key in self.INPUT_KEYS:
            if not getattr(self, key):
                return [(key, "must name a local file or folder for kind: showo")]
        if self.image_size % 16:
            return [("image_size", f"must be a multiple of 16 (MAGVIT-v2 downsamples 16x), got {self.image_size}")]
        return []
