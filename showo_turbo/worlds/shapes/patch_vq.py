"""The Shapes world's image tokenizer: a patch VQ whose codebook is every (colour, binary pattern)
pair seen in training patches, so grid-snapped scenes round-trip exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...pipeline.io import read_safetensors, write_safetensors
from ...model.tokenization import TokenizerFileError


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
