"""MAGVIT-v2, Show-o's image tokenizer: a convolutional encoder to 13 channels at 1/16 resolution,
lookup-free quantisation (LFQ: the sign of each channel is one bit, so 2^13 = 8192 codes), and a
convolutional decoder back to pixels.

Facts from Show-o's `models/modeling_magvitv2.py` (class MAGVITv2, every setting a constructor
default) and the published folder `showlab/magvitv2` (`config.json` + `pytorch_model.safetensors`);
parameter names and shapes are checked against the official list (tests/data/magvitv2-parameters.tsv).
Our code. The blocks follow the familiar VQGAN layout: GroupNorm(32, eps 1e-6) and swish in residual
blocks, attention only in the middle, stride-2 downsampling after padding (0, 1, 0, 1), nearest x2
upsampling followed by a 3x3 convolution.

    tok = load_magvitv2("checkpoints/magvitv2")      # the ImageTokenizer protocol
    codes = tok.encode(images)                        # uint8 [B, 256, 256, 3] -> int64 [B, 16, 16]
    images = tok.decode(codes)                        # -> uint8 [B, 256, 256, 3]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...pipeline.io import read_safetensors
from ...model.tokenization import TokenizerFileError


@dataclass(frozen=True)
class MagvitConfig:
    """The official sizes by default; tests use a reduced one (fewer channels and blocks)."""

    image_size: int = 256                                # pixels (512 for Show-o 512x512): 16x16 or 32x32 codes
    channels: int = 128
    encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)
    encoder_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)
    z_channels: int = 13                                 # bits per code
    norm_groups: int = 32

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.encoder_ch_mult) - 1)

    @property
    def codebook_size(self) -> int:
        return 2 ** self.z_channels


def normalize(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = normalize(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = normalize(c_out, groups), nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, 1x1 convolutions for q, k, v and the output."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = normalize(c, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (f(h).view(B, C, H * W).transpose(1, 2) for f in (self.q, self.k, self.v))  # [B, HW, C]
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return x + self.proj_out(out.transpose(1, 2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad: exact halving of even sizes


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Middle(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(c, c, groups), AttnBlock(c, groups), ResnetBlock(c, c, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution: residual blocks, then an optional resampling (`downsample` or `upsample`)."""

    def __init__(self, c_in: int, c_out: int, blocks: int, groups: int, resample: str | None):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(c_in if i == 0 else c_out, c_out, groups) for i in range(blocks))
        if resample == "down":
            self.downsample = Downsample(c_out)
        elif resample == "up":
            self.upsample = Upsample(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.block:
            x = b(x)
        for name in ("downsample", "upsample"):
            if hasattr(self, name):
                x = getattr(self, name)(x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        g, widths = cfg.norm_groups, [cfg.channels * m for m in cfg.encoder_ch_mult]
        self.conv_in = nn.Conv2d(3, cfg.channels, 3, padding=1)
        c_in, levels = cfg.channels, []
        for i, (w, n) in enumerate(zip(widths, cfg.encoder_res_blocks)):
            levels.append(Level(c_in, w, n, g, "down" if i < len(widths) - 1 else None))
            c_in = w
        self.down = nn.ModuleList(levels)
        self.mid = Middle(c_in, g)
        self.norm_out = normalize(c_in, g)
        self.conv_out = nn.Conv2d(c_in, cfg.z_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.conv_out(F.silu(self.norm_out(self.mid(h))))
        return self.quant_conv(h)


class Decoder(nn.Module):
    """Mirror of the encoder: levels are built (and named up.0 .. up.4) from the finest to the
    coarsest and run from the coarsest; every level but the finest ends in an upsampling."""

    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        g, widths = cfg.norm_groups, [cfg.channels * m for m in cfg.decoder_ch_mult]
        top = widths[-1]
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, padding=1)
        self.mid = Middle(top, g)
        levels = []
        for i, (w, n) in enumerate(zip(widths, cfg.decoder_res_blocks)):
            c_in = widths[i + 1] if i + 1 < len(widths) else top  # what the coarser level hands down
            levels.append(Level(c_in, w, n, g, "up" if i > 0 else None))
        self.up = nn.ModuleList(levels)
        self.norm_out = normalize(widths[0], g)
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class LookupFreeQuantizer(nn.Module):
    """Code i <-> the 13 bits of i, most significant first, as -1 / +1 (the buffer `embedding`)."""

    def __init__(self, bits: int):
        super().__init__()
        power = 2 ** torch.arange(bits - 1, -1, -1, dtype=torch.int64)  # 2^12 .. 2^0
        codes = torch.arange(2 ** bits, dtype=torch.int64)
        self.register_buffer("power_vals", power)
        self.register_buffer("embedding", ((codes[:, None] & power[None, :]) > 0).float() * 2 - 1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """[B, bits, h, w] continuous -> [B, h, w] codes: sum_c 2^(bits-1-c) [z_c > 0]."""
        return ((z > 0).long() * self.power_vals.view(1, -1, 1, 1)).sum(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, h, w] codes -> [B, bits, h, w] of -1 / +1."""
        return self.embedding[codes].permute(0, 3, 1, 2)


class MAGVITv2(nn.Module):
    """The tokenizer module (state_dict names as the official checkpoint) and the ImageTokenizer protocol."""

    def __init__(self, cfg: MagvitConfig = MagvitConfig()):
        super().__init__()
        self.config = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quantize = LookupFreeQuantizer(cfg.z_channels)

    # -- protocol -------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        g = self.config.image_size // self.config.downsample
        return (g, g)

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] (any size: resized and centre-cropped) -> int64 [B, h, w] codes."""
        x = preprocess(images, self.config.image_size).to(self._device())
        return self.quantize.indices(self.encoder(x)).cpu().numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int [B, h, w] codes -> uint8 [B, 16h, 16w, 3]."""
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=self._device())
        if codes.ndim != 3 or codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must be [B, h, w] in [0, {self.codebook_size}), got {list(codes.shape)}")
        x = self.decoder(self.quantize.lookup(codes))
        pixels = ((x.float().clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def _device(self) -> torch.device:
        return self.quantize.embedding.device


def preprocess(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, size, size] in [-1, 1]: shorter side resized to `size`
    (bicubic, antialiased), centre crop, as Show-o prepares images for MAGVIT-v2."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} {list(images.shape)}")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    H, W = x.shape[-2:]
    if min(H, W) != size:
        s = size / min(H, W)
        x = F.interpolate(x, size=(max(size, round(H * s)), max(size, round(W * s))), mode="bicubic",
                          antialias=True, align_corners=False).clamp(0, 1)
    H, W = x.shape[-2:]
    top, left = (H - size) // 2, (W - size) // 2
    return x[:, :, top:top + size, left:left + size] * 2 - 1


def load_magvitv2(folder: str | Path, image_size: int = 256, device: str | torch.device = "cpu") -> MAGVITv2:
    """The tokenizer from a local folder: `config.json` (its keys that name MagvitConfig fields are
    used; metadata such as `_class_name` is ignored) + `pytorch_model.safetensors`. A missing,
    truncated or foreign file is refused with its name. `image_size`: 256 or 512 (Show-o's sizes)."""
    folder = Path(folder)
    conf_path, weights = folder / "config.json", folder / "pytorch_model.safetensors"
    if not conf_path.is_file():
        raise TokenizerFileError(f"{conf_path}: not found (expected a MAGVIT-v2 folder: config.json + pytorch_model.safetensors)")
    try:
        conf = json.loads(conf_path.read_text())
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{conf_path}: not valid JSON ({e})") from None
    known = {f.name for f in fields(MagvitConfig)} - {"image_size"}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in conf.items() if k in known}
    cfg = MagvitConfig(image_size=image_size, **given)
    state, _ = read_safetensors(weights, TokenizerFileError, " (expected a MAGVIT-v2 folder)")
    model = MAGVITv2(cfg)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    if ours != theirs:
        missing = sorted(set(ours) - set(theirs))[:3]
        wrong = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])[:3]
        raise TokenizerFileError(f"{weights}: not MAGVIT-v2's parameters for {asdict(cfg)} "
                                 f"(missing {missing}, unexpected {sorted(set(theirs) - set(ours))[:3]}, other shapes {wrong})")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval().to(device)
