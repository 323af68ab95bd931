"""Tokenizers: a word-level text tokenizer carrying Show-o's special tokens, the image-tokenizer
protocol, and the Shapes world's patch VQ.

Show-o's vocabulary is `[text][PAD + 9 specials][image codes][MASK]`. `VocabLayout` computes those
offsets from the two tokenizers, so the model never hard-codes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from .errors import ShowoError
from .io import atomic_path, read_safetensors, write_safetensors

# Show-o's special tokens, in Show-o's order, right after the text vocabulary.
SHOWO_SPECIALS: tuple[str, ...] = ("[PAD]", "<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")
# The text tokenizer's own specials (Show-o uses the text tokenizer's bos/eos as <|sot|>/<|eot|>).
TEXT_SPECIALS: tuple[str, ...] = ("<|unk|>", "<|sot|>", "<|eot|>")
MASK_TOKEN = "<|mask|>"


class TokenizerFileError(ShowoError, ValueError):
    """A tokenizer file is missing, corrupt or not one of ours."""


# --------------------------------------------------------------------------------------------
# Text.


class TextTokenizer:
    """Word-level tokenizer (HF `tokenizers`) whose vocabulary is `[text specials + words][Show-o specials]`."""

    def __init__(self, tokenizer: Tokenizer):
        self.tk = tokenizer
        vocab = tokenizer.get_vocab()
        missing = [t for t in TEXT_SPECIALS + SHOWO_SPECIALS if t not in vocab]
        if missing:
            raise TokenizerFileError(f"text tokenizer lacks special tokens {missing}")
        self.text_size = vocab[SHOWO_SPECIALS[0]]  # specials follow the text vocabulary
        if [vocab[t] for t in SHOWO_SPECIALS] != list(range(self.text_size, self.text_size + len(SHOWO_SPECIALS))):
            raise TokenizerFileError("Show-o special tokens must directly follow the text vocabulary, in order")

    @classmethod
    def build(cls, words: Sequence[str]) -> "TextTokenizer":
        vocab = {t: i for i, t in enumerate([*TEXT_SPECIALS, *words, *SHOWO_SPECIALS])}
        tk = Tokenizer(models.WordLevel(vocab, unk_token=TEXT_SPECIALS[0]))
        tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tk.add_special_tokens(list(TEXT_SPECIALS + SHOWO_SPECIALS))
        return cls(tk)

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises plain Exception on bad JSON
            if isinstance(e, TokenizerFileError):
                raise TokenizerFileError(f"{path}: {e}") from None
            raise TokenizerFileError(f"{path}: not a readable tokenizers JSON file ({type(e).__name__}: {str(e)[:120]})") from None

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            self.tk.save(str(tmp))

    def token_id(self, token: str) -> int:
        i = self.tk.token_to_id(token)
        if i is None:
            raise KeyError(f"unknown token {token!r}")
        return i

    @property
    def sot_id(self) -> int:
        return self.token_id("<|sot|>")

    @property
    def eot_id(self) -> int:
        return self.token_id("<|eot|>")

    @property
    def unk_id(self) -> int:
        return self.token_id("<|unk|>")

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tk.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=skip_special_tokens)


@dataclass(frozen=True)
class VocabLayout:
    """Show-o's unified vocabulary: `[text][PAD + 9 specials][codes][MASK]`."""

    text_size: int
    codebook_size: int

    @property
    def pad_id(self) -> int:
        return self.text_size

    def special_id(self, token: str) -> int:
        return self.text_size + SHOWO_SPECIALS.index(token)

    @property
    def code_offset(self) -> int:
        return self.text_size + len(SHOWO_SPECIALS)

    @property
    def mask_id(self) -> int:
        return self.code_offset + self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.mask_id + 1

    @classmethod
    def showo(cls) -> "VocabLayout":
        """The official Show-o layout (Phi-1.5 text vocab, MAGVIT-v2 8192 codes): vocab 58498."""
        return cls(text_size=50295, codebook_size=8192)


# --------------------------------------------------------------------------------------------
# Images.


@runtime_checkable
class ImageTokenizer(Protocol):
    """What the model and samplers need from an image tokenizer (patch VQ here, MAGVIT-v2 at scale)."""

    codebook_size: int
    grid_shape: tuple[int, int]

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] -> int64 [B, h, w] codes."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int [B, h, w] codes -> uint8 [B, H, W, 3]."""


def to_patches(images: np.ndarray, patch: int) -> np.ndarray:
    """[B, H, W, C] -> [B, h, w, patch, patch, C]."""
    b, H, W, c = images.shape
    return images.reshape(b, H // patch, patch, W // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)


def from_patches(patches: np.ndarray) -> np.ndarray:
    b, h, w, p, q, c = patches.shape
    return patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * p, w * q, c)


class PatchVQ:
    """Nearest-codeword VQ over non-overlapping patches, with a factorised codebook.

    Code 0 is the black background; code `1 + colour * P + pattern` is binary `pattern` painted in
    palette `colour`. Patterns are fitted on rendered training patches (most frequent first), so
    every patch of a grid-snapped scene is reproduced exactly, unlike plain RGB k-means, which blends
    colours (TRIALS.md). Encoding is the nearest codeword in RGB (L2), so it also quantises
    images that are not exactly renderable.
    """

    FORMAT = "showo-turbo/patch-vq/1"

    def __init__(self, palette: np.ndarray, patterns: np.ndarray, image_size: int):
        self.palette = np.asarray(palette, np.uint8)  # [C, 3]
        self.patterns = np.asarray(patterns, bool)  # [P, p, p]
        self.patch = self.patterns.shape[1]
        self.image_size = image_size
        g = image_size // self.patch
        self.grid_shape = (g, g)
        C, P = len(self.palette), len(self.patterns)
        self.codebook_size = 1 + C * P
        painted = self.patterns[None, :, :, :, None] * self.palette[:, None, None, None, :]  # [C, P, p, p, 3]
        self.codebook = np.concatenate([np.zeros((1, self.patch, self.patch, 3), np.uint8),
                                        painted.reshape(C * P, self.patch, self.patch, 3).astype(np.uint8)])
        self._flat = torch.from_numpy(self.codebook.reshape(self.codebook_size, -1).astype(np.float32))

    @classmethod
    def fit(cls, images: np.ndarray, palette: np.ndarray, patch: int) -> "PatchVQ":
        """Collect the binary patch patterns that occur in `images` (non-black pixels)."""
        pats = to_patches(images, patch).any(axis=-1).reshape(-1, patch * patch)
        uniq, counts = np.unique(pats, axis=0, return_counts=True)
        keep = uniq.any(axis=1)  # the empty pattern is the background code
        uniq, counts = uniq[keep], counts[keep]
        order = sorted(range(len(uniq)), key=lambda i: (-counts[i], uniq[i].tobytes()))
        return cls(palette, uniq[order].reshape(-1, patch, patch), images.shape[1])

    def encode(self, images: np.ndarray, batch: int = 2048) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected images [B, {self.image_size}, {self.image_size}, 3], got {list(images.shape)}")
        g = self.grid_shape[0]
        out = np.empty((len(images), g, g), np.int64)
        cb_sq = (self._flat ** 2).sum(1)
        for i in range(0, len(images), batch):
            x = torch.from_numpy(to_patches(images[i:i + batch], self.patch).reshape(-1, self._flat.shape[1]).astype(np.float32))
            d = cb_sq[None, :] - 2 * x @ self._flat.T  # ||x||^2 is constant per row
            out[i:i + batch] = d.argmin(1).view(-1, g, g).numpy()
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.min(initial=0) < 0 or codes.max(initial=0) >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]")
        return from_patches(self.codebook[codes])

    def save(self, path: str | Path) -> None:
        tensors = {"palette": torch.from_numpy(self.palette.copy()),
                   "patterns": torch.from_numpy(self.patterns.astype(np.uint8))}
        meta = {"format": self.FORMAT, "image_size": str(self.image_size)}
        write_safetensors(tensors, path, meta)

    @classmethod
    def load(cls, path: str | Path) -> "PatchVQ":
        t, meta = read_safetensors(path, TokenizerFileError)
        if meta.get("format") != cls.FORMAT or set(t) != {"palette", "patterns"}:
            raise TokenizerFileError(f"{path}: not a Shapes patch-VQ file (format {meta.get('format')!r}, expected {cls.FORMAT!r})")
        return cls(t["palette"].numpy(), t["patterns"].numpy().astype(bool), int(meta["image_size"]))

    def describe(self) -> dict:
        return {"codebook_size": self.codebook_size, "patterns": len(self.patterns), "colours": len(self.palette),
                "patch_size": self.patch, "grid": list(self.grid_shape)}


def reconstruction_report(vq: ImageTokenizer, images: np.ndarray) -> dict:
    """Round-trip error of encode -> decode on `images`."""
    rec = vq.decode(vq.encode(images))
    diff = images.astype(np.float64) - rec.astype(np.float64)
    exact_images = float(np.mean(np.all(diff.reshape(len(images), -1) == 0, axis=1)))
    return {"pixel_mse": float(np.mean(diff ** 2)), "pixel_mae": float(np.mean(np.abs(diff))),
            "exact_images": exact_images, "images": int(len(images))}

