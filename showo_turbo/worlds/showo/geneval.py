"""GenEval's image layout (djghosh13/geneval, `evaluation/evaluate_images.py` reads it):

    <out>/<index:05d>/metadata.jsonl    the prompt's line of evaluation_metadata.jsonl
    <out>/<index:05d>/samples/<k:04d>.png

GenEval then scores the folder with its detector (a CUDA GPU, mmdet 2.x, Mask2Former weights):
`python evaluation/evaluate_images.py <out> --outfile results.jsonl --model-path <detector dir>`
and `python evaluation/summary_scores.py results.jsonl`. Nothing here guesses that score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ...pipeline.io import atomic_dir


def export_geneval(images: np.ndarray, prompts: Sequence, images_per_prompt: int, out_dir: str | Path) -> Path:
    """Write `images` [images_per_prompt * P, H, W, 3] (seed-major: image j * P + i is prompt i's
    j-th sample, the order of the evaluation's arms) for `prompts` (each with `metadata`) into
    GenEval's layout at `out_dir` (replaced whole, atomically)."""
    from PIL import Image

    P = len(prompts)
    if len(images) != images_per_prompt * P:
        raise ValueError(f"{len(images)} images for {P} prompts x {images_per_prompt}")
    with atomic_dir(out_dir) as tmp:
        for i, p in enumerate(prompts):
            folder = Path(tmp) / f"{i:05d}"
            (folder / "samples").mkdir(parents=True)
            (folder / "metadata.jsonl").write_text(json.dumps(p.metadata) + "\n")
            for k in range(images_per_prompt):
                Image.fromarray(images[k * P + i]).save(folder / "samples" / f"{k:04d}.png")
    return Path(out_dir)
