"""Sampled image codes kept for reuse, so that one setting is sampled once per pipeline run.

The teacher stage scores the teacher at every step count with and without CFG; the evaluate stage's
teacher arms sample the same settings again. When both use the same prompts, seeds, sampler,
precision and batch size (params.yaml's defaults do), the teacher stage stores its codes in
`data/teacher/samples/` and the evaluate stage takes them from there instead of drawing them a
second time. The key holds everything the codes depend on, so a setting that differs in anything
is simply sampled anew: reuse never changes a result, it only skips recomputing it.

    store = SampleStore.load("data/teacher/samples")     # empty when the folder is missing
    key = sample_key(model_sha256, prompts, steps=16, cfg_scale=2.0, seed=0, batch_size=64, precision="fp32", ...)
    codes = store.get(key)                               # [images, N] or None
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

from ..pipeline.errors import ShowoError
from ..pipeline.io import read_safetensors, write_safetensors

STORE_FORMAT = "showo-turbo/samples"
STORE_VERSION = 1
STORE_FILE = "codes.safetensors"


class SampleStoreError(ShowoError, ValueError):
    """A sample store file is unreadable, of another version, or foreign."""


def prompts_sha256(texts: Sequence[str]) -> str:
    """One hash of the prompt texts in order (the order fixes which generator draw each image gets)."""
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()


def sample_key(model_sha256: str, prompt_texts: Sequence[str], steps: int, cfg_scale: float, seed: int,
               batch_size: int, precision: str, device: str, sampler: dict) -> str:
    """The identity of one seeded image set: the model's weights file, the prompts, the sampler's
    settings, the seed, the batch layout (the generator runs across batches) and the resolved
    precision and device type (bf16 or another device draws other codes)."""
    return json.dumps({"model": model_sha256, "prompts": prompts_sha256(prompt_texts), "steps": int(steps),
                       "cfg_scale": float(cfg_scale), "seed": int(seed), "batch_size": int(batch_size),
                       "precision": precision, "device": device,
                       "sampler": {k: sampler[k] for k in sorted(sampler)}}, sort_keys=True)


class SampleStore:
    """Code tensors by `sample_key`; `save` writes them as one safetensors file, the keys in its header."""

    def __init__(self) -> None:
        self.codes: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.codes)

    def get(self, key: str) -> torch.Tensor | None:
        return self.codes.get(key)

    def put(self, key: str, codes: torch.Tensor) -> None:
        self.codes[key] = codes.detach().to("cpu", torch.int32)

    @classmethod
    def load(cls, folder: str | Path) -> "SampleStore":
        """The store in `folder`; an empty one when there is none."""
        store, path = cls(), Path(folder) / STORE_FILE
        if not path.is_file():
            return store
        tensors, meta = read_safetensors(path, SampleStoreError)
        if meta.get("format") != STORE_FORMAT:
            raise SampleStoreError(f"{path}: not a showo-turbo sample store (format {meta.get('format')!r})")
        if meta.get("version") != str(STORE_VERSION):
            raise SampleStoreError(f"{path}: sample store version {meta.get('version')}, this code reads {STORE_VERSION}; "
                                   "rerun the stage that wrote it")
        try:
            keys = json.loads(meta["keys"])
        except (KeyError, json.JSONDecodeError):
            raise SampleStoreError(f"{path}: damaged index (header key 'keys')") from None
        if sorted(keys) != sorted(tensors):
            raise SampleStoreError(f"{path}: the index does not match the tensors in the file")
        store.codes = {keys[name]: tensors[name] for name in sorted(keys)}
        return store

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / STORE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        names = {f"set_{i:04d}": key for i, key in enumerate(sorted(self.codes))}
        write_safetensors({name: self.codes[key] for name, key in names.items()}, path,
                          {"format": STORE_FORMAT, "version": str(STORE_VERSION), "keys": json.dumps(names, sort_keys=True)})
        return path
