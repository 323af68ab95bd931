"""Small I/O helpers: atomic writes and the project root."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import FileFormatError, ShowoError


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path` (atomic on POSIX),
    on failure delete it. A killed run leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 (and some writers recreate the file): give it normal permissions
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; on success swap it in for `path` (a checkpoint
    folder is then the old one or the new one, never a mix), on failure delete it."""
    import shutil
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def save_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def load_json(path: str | Path) -> Any:
    """A JSON file; a damaged one is refused with its name (FileFormatError), a missing one raises FileNotFoundError."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path}: not valid JSON ({e})") from None


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) that holds dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file():
            return d
    raise FileNotFoundError(f"no dvc.yaml at or above {here}: run from inside the showo-turbo project")


# safetensors writes a header's metadata map in a random key order (a Rust HashMap), so the same
# tensors and metadata gave different bytes on every write and DVC saw a new output each rerun. The
# metadata therefore travels as one key holding sorted JSON; files with plain keys still read.
METADATA_KEY = "showo_turbo.metadata"


def write_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str]) -> None:
    """Atomic safetensors write with string metadata in the header; the same input gives the same bytes."""
    from safetensors.torch import save_file

    header = {METADATA_KEY: json.dumps({str(k): str(v) for k, v in metadata.items()}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)


def read_torch_state(path: str | Path, error: type[Exception]) -> dict:
    """A training state saved with torch.save (optimizer, RNG); a missing or damaged file raises
    `error` naming the file instead of a traceback from inside torch's unpickler."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: not found")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # zip, pickle and EOF errors of a truncated or foreign file
        raise error(f"{path}: not a readable training state ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise error(f"{path}: not a showo-turbo training state")
    return state


def read_safetensors(path: str | Path, error: type[Exception], missing_hint: str = "") -> tuple[dict, dict[str, str]]:
    """(tensors, header metadata) of a safetensors file; a missing or unreadable file raises
    `error` with a message naming the file, never a traceback from inside safetensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: not found{missing_hint}")
    try:
        with safe_open(str(path), "pt") as f:
            tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path}: not a readable safetensors file ({e})") from None
    if METADATA_KEY in meta:
        try:
            meta = {**{k: v for k, v in meta.items() if k != METADATA_KEY}, **json.loads(meta[METADATA_KEY])}
        except json.JSONDecodeError:
            raise error(f"{path}: damaged header metadata ({METADATA_KEY} is not JSON)") from None
    return tensors, meta


def log_loss_row(live, step: int, losses: dict, prefix: str, **extra_metrics: float) -> None:
    """One step of DVCLive metrics: `prefix/loss_<name>` for every loss, `prefix/<name>` for the extras."""
    live.step = step
    for k, v in losses.items():
        live.log_metric(f"{prefix}/loss_{k}", v)
    for k, v in extra_metrics.items():
        live.log_metric(f"{prefix}/{k}", v)
    live.next_step()


class LossLog:
    """Running means of a training loop's losses; `flush` appends them to `history.jsonl` and logs
    them to DVCLive (`live`, under `prefix/loss_<name>`) when `write` is true."""

    def __init__(self, path: str | Path, live=None, prefix: str = "train"):
        self.path, self.live, self.prefix = Path(path), live, prefix
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, losses: dict) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.n += 1

    def resume(self, step: int) -> None:
        """Continue a run from its checkpoint at `step`: keep the history up to `step` (a killed run
        may have logged past its last checkpoint) and replay it into DVCLive, whose folder DVC
        deleted before rerunning the stage, so the curves stay whole."""
        rows = [json.loads(line) for line in open(self.path)] if self.path.is_file() else []
        rows = [r for r in rows if r["step"] <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if self.live is not None:
            for r in rows:
                log_loss_row(self.live, r["step"], {k: v for k, v in r.items() if k not in ("step", "seconds")}, self.prefix)

    def flush(self, step: int, seconds: float, write: bool = True, **extra_metrics: float) -> dict[str, float]:
        means = {k: v / max(self.n, 1) for k, v in self.sums.items()}
        if write:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "seconds": round(seconds, 1), **means}) + "\n")
            if self.live is not None:
                log_loss_row(self.live, step, means, self.prefix, **extra_metrics)
        self.sums, self.n = {}, 0
        return means


class FolderBusyError(ShowoError, RuntimeError):
    """Another process is writing a folder that a run resumes (a checkpoint, a store, a student)."""


@contextlib.contextmanager
def exclusive_folder(folder: str | Path) -> Iterator[Path]:
    """Hold `<folder>.lock` while writing `folder`, so that two runs never train or collect into the
    same folder (e.g. after `kill -9` of `dvc` alone, whose stage keeps running): a second writer is
    refused in one line naming the folder and the holder's PID."""
    import filelock

    path = Path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f"{path.name}.lock"
    lock = filelock.FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = lock_path.read_text().strip() if lock_path.is_file() else ""
        raise FolderBusyError(f"{path}: another process (PID {holder or 'unknown'}) is writing it; "
                              f"wait for it or stop it") from None
    try:
        lock_path.write_text(str(os.getpid()))
        yield path
    finally:
        lock.release()
