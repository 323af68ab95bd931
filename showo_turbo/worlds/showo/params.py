"""Real Show-o's section of params.yaml (`world:` with `kind: showo`). Every path is a local file
or folder: nothing is fetched from a hub."""

from __future__ import annotations

from dataclasses import dataclass

from ...params import param


@dataclass(frozen=True)
class ShowoWorldParams:
    """Show-o's tokenizers and the prompt / question files (stage `world`)."""

    kind: str = param("showo", choices=("showo",), doc="the world plug-in (showo_turbo.worlds)")
    tokenizer_dir: str = param("", doc="local phi-1_5 folder: its tokenizer files (and config.json for the backbone)")
    magvit_dir: str = param("", doc="local MAGVIT-v2 folder: config.json + pytorch_model.safetensors")
    image_size: int = param(256, min=16, doc="pixels: 256 (show-o) or 512 (show-o-512x512); a multiple of 16")
    t2i_train: str = param("", doc="captions for trajectory collection: .txt (one per line) or .jsonl ('prompt' per line)")
    t2i_eval: str = param("", doc="evaluation prompts in GenEval's format (evaluation_metadata.jsonl)")
    mmu_train: str = param("", doc=".jsonl of {image, question, answer[, kind]} for MMU trajectories (paths relative to it)")
    mmu_eval: str = param("", doc=".jsonl of held-out {image, question, answer[, kind]} (e.g. POPE's yes/no)")
    caption_tokens: int = param(125, min=1, doc="caption length of the T2I prompt (longer captions are cut)")
    answer_tokens: int = param(16, min=1, doc="answer tokens decoded at most (<|eot|> not counted)")
    encode_batch: int = param(16, min=1, doc="images per MAGVIT-v2 batch while building")
    device: str = param("cpu", choices=("cpu", "cuda"), doc="where MAGVIT-v2 encodes while building")
    bootstrap: int = param(1000, min=0, doc="bootstrap resamples of a scorer's interval (none runs inside here)")

    def check(self) -> list[tuple[str, str]]:
        for key in ("tokenizer_dir", "magvit_dir", "t2i_train", "t2i_eval", "mmu_train", "mmu_eval"):
            if not getattr(self, key):
                return [(key, "must name a local file or folder for kind: showo")]
        if self.image_size % 16:
            return [("image_size", f"must be a multiple of 16 (MAGVIT-v2 downsamples 16x), got {self.image_size}")]
        return []
