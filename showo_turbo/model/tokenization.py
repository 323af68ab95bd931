"""Tokenizers: a word-level text tokenizer carrying Show-o's special tokens, the image-tokenizer
protocol and the vocabulary layout (a world brings its own image tokenizer: the Shapes world's
patch VQ in `worlds/shapes/patch_vq.py`, real Show-o's MAGVIT-v2 in `magvit.py`).

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

from ..pipeline.errors import ShowoError
from ..pipeline.io import atomic_path

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
    """What the model and samplers need from an image tokenizer (a world's: the Shapes patch VQ,
    MAGVIT-v2 for real Show-o)."""

    codebook_size: int
    grid_shape: tuple[int, int]

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] -> int64 [B, h, w] codes."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int [B, h, w] codes -> uint8 [B, H, W, 3]."""


def reconstruction_report(vq: ImageTokenizer, images: np.ndarray) -> dict:
    """Round-trip error of encode -> decode on `images`."""
    rec = vq.decode(vq.encode(images))
    diff = images.astype(np.float64) - rec.astype(np.float64)
    exact_images = float(np.mean(np.all(diff.reshape(len(images), -1) == 0, axis=1)))
    return {"pixel_mse": float(np.mean(diff ** 2)), "pixel_mae": float(np.mean(np.abs(diff))),
            "exact_images": exact_images, "images": int(len(images))}


def pad_tokens(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded int32 rows [len(seqs), length] and their lengths; a longer sequence is refused."""
    out = torch.full((len(seqs), length), pad_id, dtype=torch.int32)
    lens = torch.zeros(len(seqs), dtype=torch.int32)
    for i, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence of {len(s)} tokens exceeds length {length}")
        out[i, :len(s)] = torch.tensor(s, dtype=torch.int32)
        lens[i] = len(s)
    return out, lens
