"""The real world's input files, read with every problem named by file and line:

- captions for trajectory collection: a .txt with one caption per line (e.g. COCO captions), or a
  .jsonl whose lines carry `prompt` (GenEval's file works too);
- evaluation prompts: GenEval's `evaluation_metadata.jsonl` (each line: tag, include, exclude?,
  prompt), every line kept as it is for the export;
- MMU items: a .jsonl of {image, question, answer, kind?, references?}, image paths relative to the
  file (POPE's yes/no questions fit). `references`: reference captions (Flickr30K / NoCaps style),
  which score the item by CIDEr-D; `answer` may then be left out (the first reference trains).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import WorldFileError


@dataclass(frozen=True)
class GenEvalPrompt:
    text: str
    category: str                                     # GenEval's tag
    metadata: dict = field(compare=False, repr=False)  # the whole line, written back by the export


@dataclass(frozen=True)
class MMUItem:
    kind: str
    question: str
    answer: str
    image: str  # absolute path
    references: tuple[str, ...] = ()  # reference captions (CIDEr-D), or none


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WorldFileError(f"{path}: not found")
    return path


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorldFileError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        if not isinstance(row, dict):
            raise WorldFileError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append((n, row))
    if not rows:
        raise WorldFileError(f"{path}: no entries")
    return rows


def _text(row: dict, key: str, path: Path, n: int) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v.strip():
        raise WorldFileError(f"{path}:{n}: needs a non-empty string {key!r}")
    return v.strip()


def read_captions(path: str | Path) -> list[str]:
    """Distinct captions in file order."""
    path = _existing(path)
    if path.suffix == ".jsonl":
        caps = [_text(row, "prompt", path, n) for n, row in _jsonl(path)]
    else:
        caps = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not caps:
            raise WorldFileError(f"{path}: no captions")
    return list(dict.fromkeys(caps))


def read_geneval(path: str | Path) -> list[GenEvalPrompt]:
    path = _existing(path)
    out = []
    for n, row in _jsonl(path):
        if not isinstance(row.get("include"), list):
            raise WorldFileError(f"{path}:{n}: needs GenEval's 'include' list")
        out.append(GenEvalPrompt(_text(row, "prompt", path, n), _text(row, "tag", path, n), row))
    return out


def read_mmu(path: str | Path) -> list[MMUItem]:
    path = _existing(path)
    out = []
    for n, row in _jsonl(path):
        image = (path.parent / _text(row, "image", path, n)).resolve()
        if not image.is_file():
            raise WorldFileError(f"{path}:{n}: image {image} not found")
        refs = row.get("references", [])
        if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
            raise WorldFileError(f"{path}:{n}: 'references' must be a list of non-empty strings")
        refs = tuple(r.strip() for r in refs)
        answer = _text(row, "answer", path, n) if "answer" in row or not refs else refs[0]
        out.append(MMUItem(str(row.get("kind") or "mmu"), _text(row, "question", path, n), answer, str(image), refs))
    return out


def load_images(paths: Sequence[str], size: int) -> np.ndarray:
    """uint8 [B, size, size, 3]: each image in RGB, its shorter side resized to `size` and centre-cropped
    (MAGVIT-v2's preprocessing, so encoding these gives what encoding the originals gives)."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from .magvit import preprocess

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                rgb = np.array(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise WorldFileError(f"{p}: not a readable image ({e})") from None
        x = preprocess(rgb[None], size)[0]
        out[i] = ((x + 1) / 2 * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return out
