"""MAGVIT-v2 (Show-o's image tokenizer): official names and shapes, the LFQ code <-> bits mapping,
loading an official-named folder, refusing bad files, and round-trip shapes at 256 and 512 px."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import showo_turbo
from showo_turbo.worlds.showo.magvit import MAGVITv2, LookupFreeQuantizer, MagvitConfig, load_magvitv2, preprocess
from showo_turbo.model.tokenization import ImageTokenizer, TokenizerFileError

DATA = Path(__file__).parent / "data"
# Reduced for the CPU: fewer channels and blocks, the same 16x downsampling and 13-bit LFQ.
SMALL = {"channels": 32, "encoder_res_blocks": [1, 1, 1, 1, 1], "decoder_res_blocks": [1, 1, 1, 1, 1]}


def small(image_size: int = 256) -> MagvitConfig:
    return MagvitConfig(image_size=image_size, **{k: tuple(v) if isinstance(v, list) else v for k, v in SMALL.items()})


def official_list() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in (DATA / "magvitv2-parameters.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    return {name: tuple(int(x) for x in shape.split(",")) for name, shape in rows}


def write_folder(folder: Path, model: MAGVITv2, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2", **config}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "pytorch_model.safetensors"))
    return folder


def test_full_size_matches_the_official_names_and_shapes():
    with torch.device("meta"):
        m = MAGVITv2()
    ours = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert ours == official_list()
    assert sum(p.numel() for p in m.parameters()) == 95_387_004 and len(list(m.parameters())) == 380
    assert m.codebook_size == 8192 and m.grid_shape == (16, 16)
    assert MAGVITv2(small(512)).grid_shape == (32, 32)


def test_lfq_codes_are_the_bits_of_their_index():
    q = LookupFreeQuantizer(13)
    for i in (0, 1, 2, 4095, 4096, 5461, 8191):
        bits = [1.0 if b == "1" else -1.0 for b in format(i, "013b")]  # most significant first
        assert q.embedding[i].tolist() == bits
    assert q.power_vals.tolist() == [2 ** (12 - c) for c in range(13)]
    z = torch.randn(2, 13, 3, 4, generator=torch.Generator().manual_seed(0))
    idx = q.indices(z)
    expected = torch.zeros(2, 3, 4, dtype=torch.long)
    for c in range(13):  # index = sum_c 2^(12-c) [z_c > 0], written out
        expected += (z[:, c] > 0).long() << (12 - c)
    assert torch.equal(idx, expected)
    assert torch.equal(q.lookup(idx), torch.sign(z))  # a code's bits are the signs it came from


def test_an_official_named_folder_loads_and_round_trips_at_256_and_512(tmp_path):
    torch.manual_seed(0)
    model = MAGVITv2(small())
    folder = write_folder(tmp_path / "magvitv2", model, SMALL)
    tok = showo_turbo.load_magvitv2(folder)
    assert isinstance(tok, ImageTokenizer)
    assert all(torch.equal(a, b) for a, b in zip(tok.state_dict().values(), model.state_dict().values()))
    rng = np.random.default_rng(0)
    for size, grid in ((256, 16), (512, 32)):
        tok = load_magvitv2(folder, image_size=size)
        images = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        codes = tok.encode(images)
        assert codes.shape == (1, grid, grid) and codes.dtype == np.int64
        assert codes.min() >= 0 and codes.max() < 8192
        out = tok.decode(codes)
        assert out.shape == (1, size, size, 3) and out.dtype == np.uint8
    # encode is the quantised encoder output
    x = preprocess(images, 512)
    assert np.array_equal(tok.encode(images), tok.quantize.indices(tok.encoder(x)).numpy())


def test_preprocessing_resizes_the_shorter_side_and_crops_the_centre():
    img = np.zeros((1, 300, 400, 3), np.uint8)
    img[:, :, 200:] = 255  # right half white
    x = preprocess(img, 256)
    assert x.shape == (1, 3, 256, 256) and x.min() >= -1 and x.max() <= 1
    # 300x400 -> 256x341 (white from column 171), the centre crop drops 42 columns: white from ~129
    assert x[0, :, :, :120].max() < -0.9 and x[0, :, :, 136:].min() > 0.9
    with pytest.raises(ValueError, match="expected uint8 images"):
        preprocess(img.astype(np.float32), 256)


def test_bad_folders_are_refused_with_the_file_named(tmp_path):
    model = MAGVITv2(small())
    folder = write_folder(tmp_path / "m", model, SMALL)
    weights = folder / "pytorch_model.safetensors"
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    with pytest.raises(TokenizerFileError, match="pytorch_model.safetensors: not a readable safetensors file"):
        load_magvitv2(folder)
    save_file({"showo.model.embed_tokens.weight": torch.zeros(4, 4)}, str(weights))  # e.g. a Show-o file
    with pytest.raises(TokenizerFileError, match="pytorch_model.safetensors: not MAGVIT-v2's parameters"):
        load_magvitv2(folder)
    (folder / "config.json").unlink()
    with pytest.raises(TokenizerFileError, match="config.json: not found"):
        load_magvitv2(folder)
    with pytest.raises(ValueError, match="codes must be"):
        model.decode(np.full((1, 2, 2), 8192))
