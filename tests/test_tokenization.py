"""Text tokenizer, vocabulary layout and the patch VQ."""

import numpy as np
import pytest

from showo_turbo.worlds.shapes.scenes import SHAPES, Obj, WorldSpec, random_scene, render, render_batch, vocabulary
from showo_turbo.model.tokenization import (SHOWO_SPECIALS, ImageTokenizer, TextTokenizer, TokenizerFileError, VocabLayout,
                                      reconstruction_report)
from showo_turbo.worlds.shapes.patch_vq import PatchVQ

SPEC = WorldSpec()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return render_batch([random_scene(SPEC, rng) for _ in range(600)], SPEC)


@pytest.fixture(scope="module")
def vq(images):
    return PatchVQ.fit(images[:400], SPEC.palette, SPEC.patch_size)


def test_text_tokenizer_round_trip_and_specials(tmp_path):
    tk = TextTokenizer.build(vocabulary(SPEC))
    ids = tk.encode("a red circle left of an orange square")
    assert len(ids) == 8 and tk.unk_id not in ids
    assert tk.decode(ids) == "a red circle left of an orange square"
    assert tk.encode("a teal circle")[1] == tk.unk_id
    # Show-o's specials directly follow the text vocabulary, in order; sot/eot are text tokens.
    assert [tk.token_id(t) for t in SHOWO_SPECIALS] == list(range(tk.text_size, tk.text_size + 10))
    assert tk.sot_id < tk.text_size and tk.eot_id < tk.text_size
    assert tk.encode("<|t2i|> <|sot|> a circle <|eot|>")[0] == tk.text_size + 5
    tk.save(tmp_path / "tok.json")
    tk2 = TextTokenizer.load(tmp_path / "tok.json")
    assert tk2.encode("two squares") == tk.encode("two squares") and tk2.vocab_size == tk.vocab_size


def test_text_tokenizer_refuses_bad_files(tmp_path):
    p = tmp_path / "tok.json"
    p.write_text("{not json")
    with pytest.raises(TokenizerFileError, match="tok.json: not a readable tokenizers JSON"):
        TextTokenizer.load(p)
    from tokenizers import Tokenizer, models
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(p))
    with pytest.raises(TokenizerFileError, match="lacks special tokens"):
        TextTokenizer.load(p)


def test_vocab_layout_matches_showo():
    lay = VocabLayout.showo()
    assert (lay.pad_id, lay.code_offset, lay.mask_id, lay.vocab_size) == (50295, 50305, 58497, 58498)
    assert lay.special_id("<|t2i|>") == 50300 and lay.special_id("<|mmu|>") == 50301


def test_patch_vq_is_lossless_on_held_out_renders(vq, images):
    assert isinstance(vq, ImageTokenizer)
    codes = vq.encode(images[400:])
    assert codes.shape == (200, 8, 8) and codes.min() >= 0 and codes.max() < vq.codebook_size
    assert (vq.decode(codes) == images[400:]).all()
    rep = reconstruction_report(vq, images[400:])
    assert rep["pixel_mse"] == 0 and rep["exact_images"] == 1.0


def test_patch_vq_codebook_factorises_colour_and_pattern(vq):
    C, P = len(SPEC.colours), len(vq.patterns)
    assert vq.codebook_size == 1 + C * P
    assert (vq.codebook[0] == 0).all()  # background
    assert len({vq.codebook[k].tobytes() for k in range(vq.codebook_size)}) == vq.codebook_size
    # Every sub-patch of every shape template at every world size is in the codebook.
    for shape in SPEC.shapes:
        for size in SPEC.object_sizes:
            im = render((Obj(shape, "red", size, 0, 0),), SPEC)
            assert (vq.decode(vq.encode(im[None])) == im).all(), (shape, size)


def test_patch_vq_quantises_noisy_images_to_nearest_codeword(vq, images):
    rng = np.random.default_rng(3)
    noisy = np.clip(images[400:450].astype(int) + rng.integers(-20, 21, images[400:450].shape), 0, 255).astype(np.uint8)
    assert (vq.encode(noisy) == vq.encode(images[400:450])).all()


def test_patch_vq_save_load_and_refusals(vq, tmp_path, images):
    p = tmp_path / "vq.safetensors"
    vq.save(p)
    vq2 = PatchVQ.load(p)
    assert (vq2.encode(images[:20]) == vq.encode(images[:20])).all()
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(TokenizerFileError, match="vq.safetensors: not a readable safetensors file"):
        PatchVQ.load(p)
    from safetensors.torch import save_file
    import torch
    save_file({"weight": torch.zeros(2)}, str(p))
    with pytest.raises(TokenizerFileError, match="not a Shapes patch-VQ file"):
        PatchVQ.load(p)
    with pytest.raises(TokenizerFileError, match="not found"):
        PatchVQ.load(tmp_path / "missing.safetensors")


def test_patch_vq_input_checks(vq):
    with pytest.raises(ValueError, match=r"expected images \[B, 32, 32, 3\]"):
        vq.encode(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="codes must lie in"):
        vq.decode(np.full((1, 8, 8), vq.codebook_size))


def test_all_world_shapes_known():
    assert set(SPEC.shapes) <= set(SHAPES)
