"""Helpers the world plug-ins share (not imported by the method core)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from ..model.tokenization import VocabLayout
from ..pipeline.io import read_safetensors, write_safetensors
from . import WorldFileError


def read_world_json(root: Path, fmt: str, params_cls: type, defaults: dict | None = None) -> tuple[dict, Any]:
    """A world folder's world.json and its params (a `params_cls`), refused by name when it is
    missing, of another format or carries bad params; `defaults` fill keys an older file lacks."""
    from ..pipeline.io import load_json
    from ..pipeline.params import ParamsError, validate_section

    path = root / "world.json"
    if not path.is_file():
        raise WorldFileError(f"{path}: not found (run `dvc repro world`)")
    summary = load_json(path)
    if summary.get("format") != fmt:
        raise WorldFileError(f"{path}: format {summary.get('format')!r}, expected {fmt!r}")
    try:
        params = validate_section(params_cls, {**(defaults or {}), **summary["params"]}, "world.")
    except ParamsError as e:
        raise WorldFileError(f"{path}: {e}") from None
    return summary, params


def token_names(ids: Sequence[int], layout: VocabLayout, text_name) -> list[str]:
    """Readable names of unified-vocabulary ids: image codes as `<img:k>`, [MASK] as `<|mask|>`,
    everything else by `text_name(id)` (the text tokenizer's own token)."""
    out = []
    for i in map(int, ids):
        if layout.code_offset <= i < layout.code_offset + layout.codebook_size:
            out.append(f"<img:{i - layout.code_offset}>")
        elif i == layout.mask_id:
            out.append("<|mask|>")
        else:
            out.append(text_name(i) or f"<{i}>")
    return out


def vocab_sha256(vocab: dict[str, int]) -> str:
    """sha256 of a text vocabulary (token -> id), in id order: what a world's fingerprint records."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode()).hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, fmt: str) -> None:
    """A world dataset: its tensors, its format and its row count in the safetensors header."""
    write_safetensors(tensors, path, {"format": fmt, "rows": str(len(next(iter(tensors.values()))))})


def load_tensors(path: str | Path, fmt: str) -> dict[str, torch.Tensor]:
    """A world dataset, refused by name when it is missing, corrupt or of another format."""
    tensors, meta = read_safetensors(path, WorldFileError, " (run `dvc repro world`)")
    if meta.get("format") != fmt:
        raise WorldFileError(f"{path}: format {meta.get('format')!r}, expected {fmt!r}")
    rows = {len(t) for t in tensors.values()}
    if rows != {int(meta["rows"])}:
        raise WorldFileError(f"{path}: tensors have {sorted(rows)} rows, header says {meta['rows']}")
    return tensors


class TrainingSets:
    """`t2i_train` / `mmu_train` of a world folder `root` whose datasets carry `FORMAT/<kind>`."""

    root: Path
    FORMAT: ClassVar[str]

    def t2i_train(self) -> dict[str, torch.Tensor]:
        return load_tensors(self.root / "t2i_train.safetensors", f"{self.FORMAT}/t2i")

    def mmu_train(self) -> dict[str, torch.Tensor]:
        return load_tensors(self.root / "mmu_train.safetensors", f"{self.FORMAT}/mmu")
