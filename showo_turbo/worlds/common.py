"""Helpers the world plug-ins share (not imported by the method core)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..model.tokenization import VocabLayout
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
