"""Versioned, checksummed safetensors shards with a manifest (the trajectory store's on-disk format).

    <dir>/manifest.json          {"format", "version", "kind", "params", "counts", "shards": [{"file", "rows", "bytes", "sha256"}]}
    <dir>/shard-00000.safetensors ...

Shards are written atomically one by one and the manifest last, so a killed writer leaves a
readable prefix that `ShardWriter` resumes from. Reading checks the format version, the file's size
and SHA-256 and the shard's own header, and refuses a truncated, altered or foreign shard with a
message naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .errors import ShowoError
from .io import load_json, read_safetensors, save_json, write_safetensors

SHARD_FORMAT = "showo-turbo/shards"
SHARD_VERSION = 1


class ShardError(ShowoError, ValueError):
    """A shard or manifest is missing, truncated, altered, of another version, or foreign."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ShardWriter:
    """Appends shards of `kind` to `root`; reopening an existing store with the same kind and
    params continues after its last complete shard (resume). A store written with other params is
    refused, or with `restart=True` deleted and started over (a pipeline stage whose params changed)."""

    root: Path
    kind: str
    params: dict
    restart: bool = False
    shards: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / "manifest.json").is_file():
            m = read_manifest(self.root, self.kind)
            if m["params"] == self.params:
                self.shards = m["shards"]
            elif self.restart:
                for f in self.root.glob("shard-*.safetensors"):
                    f.unlink()
                (self.root / "manifest.json").unlink()
            else:
                raise ShardError(f"{self.root / 'manifest.json'}: written with other params; delete the folder to start over")

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    def append(self, tensors: dict[str, torch.Tensor]) -> None:
        rows = {len(t) for t in tensors.values()}
        if len(rows) != 1:
            raise ValueError(f"tensors of one shard must share their first dimension, got {sorted(rows)}")
        name = f"shard-{len(self.shards):05d}.safetensors"
        path = self.root / name
        write_safetensors(tensors, path, {"format": SHARD_FORMAT, "version": str(SHARD_VERSION), "kind": self.kind,
                                          "index": str(len(self.shards))})
        self.shards.append({"file": name, "rows": rows.pop(), "bytes": path.stat().st_size, "sha256": sha256_of(path)})
        self._write_manifest()

    def _write_manifest(self, counts: dict | None = None) -> None:
        save_json({"format": SHARD_FORMAT, "version": SHARD_VERSION, "kind": self.kind, "params": self.params,
                   "counts": {"rows": self.rows, "shards": len(self.shards), **(counts or {})}, "shards": self.shards},
                  self.root / "manifest.json")

    def finish(self, **counts) -> None:
        self._write_manifest({**counts, "complete": True})


def read_manifest(root: str | Path, kind: str | None = None) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise ShardError(f"{path}: not found")
    try:
        m = load_json(path)
    except ValueError as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path}: not a showo-turbo shard manifest")
    if m.get("version") != SHARD_VERSION:
        raise ShardError(f"{path}: format version {m.get('version')!r}, this code reads version {SHARD_VERSION}")
    if kind is not None and m.get("kind") != kind:
        raise ShardError(f"{path}: holds {m.get('kind')!r} shards, expected {kind!r}")
    return m


class ShardReader:
    """Validated access to a complete shard store."""

    def __init__(self, root: str | Path, kind: str, require_complete: bool = True):
        self.root = Path(root)
        self.manifest = read_manifest(self.root, kind)
        if require_complete and not self.manifest["counts"].get("complete"):
            raise ShardError(f"{self.root / 'manifest.json'}: the store is incomplete (writer interrupted); rerun it to resume")
        self.kind = kind

    def __len__(self) -> int:
        return len(self.manifest["shards"])

    @property
    def params(self) -> dict:
        return self.manifest["params"]

    def load(self, i: int) -> dict[str, torch.Tensor]:
        entry = self.manifest["shards"][i]
        path = self.root / entry["file"]
        redo = f"; delete {self.root} and rerun the stage that wrote it"  # the store is not repaired in place
        if not path.is_file():
            raise ShardError(f"{path}: missing{redo}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ShardError(f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or replaced){redo}")
        if sha256_of(path) != entry["sha256"]:
            raise ShardError(f"{path}: checksum mismatch (the file was altered){redo}")
        tensors, meta = read_safetensors(path, ShardError)
        if meta.get("format") != SHARD_FORMAT or meta.get("version") != str(SHARD_VERSION) or meta.get("kind") != self.kind:
            raise ShardError(f"{path}: header says format {meta.get('format')!r} version {meta.get('version')!r} kind "
                             f"{meta.get('kind')!r}, expected {SHARD_FORMAT!r} version {SHARD_VERSION} kind {self.kind!r}")
        return tensors

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(len(self)):
            yield self.load(i)
