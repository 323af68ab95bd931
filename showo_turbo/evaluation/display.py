"""Image grids for reports and the explorer."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def sample_grid(images: np.ndarray, captions: Sequence[str], scale: int = 4, cols: int = 6, label_h: int = 28) -> Image.Image:
    """Upscaled images in a grid with their (wrapped) captions underneath."""
    n, h, w = len(images), images.shape[1] * scale, images.shape[2] * scale
    cell_w = max(w, 150)
    rows = (n + cols - 1) // cols
    grid = Image.new("RGB", (cols * cell_w, rows * (h + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (im, cap) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell_w, (i // cols) * (h + label_h)
        grid.paste(Image.fromarray(im).resize((w, h), Image.NEAREST), (x + (cell_w - w) // 2, y))
        words, lines = cap.split(), [""]
        for word in words:
            if len(lines[-1]) + len(word) > 24:
                lines.append("")
            lines[-1] = (lines[-1] + " " + word).strip()
        draw.multiline_text((x + 2, y + h + 1), "\n".join(lines[:2]), fill=(0, 0, 0), spacing=1)
    return grid
