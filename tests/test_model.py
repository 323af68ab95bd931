"""Model: vocabulary layout, prompts, omni-attention masks, losses, checkpoints, Show-o naming."""

import os
from pathlib import Path

import pytest
import torch

from showo_turbo.model.showo import (PRESETS, CheckpointError, ShowoModel, image_slice, load_model, load_official_showo,
                               lm_loss, mask_image_tokens, mmu_attention_mask, mmu_loss, mmu_position_ids,
                               mmu_sequences, omni_attention_mask, preset_config, save_model, t2i_loss, t2i_sequences)
from showo_turbo.model.tokenization import VocabLayout

DATA = Path(__file__).parent / "data"
WORLD = dict(text_size=40, codebook_size=20, num_image_tokens=16, max_caption_tokens=6, sot_id=1, eot_id=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ShowoModel(preset_config("micro", **WORLD)).eval()


def caption(*words, length=6):
    c = torch.zeros(1, length, dtype=torch.long)
    c[0, :len(words)] = torch.tensor(words)
    return c, torch.tensor([len(words)])


def test_t2i_sequence_layout(model):
    cfg, lay = model.config, model.config.layout
    c, n = caption(10, 11, 12)
    image = torch.arange(16).view(1, 16) + lay.code_offset
    ids = t2i_sequences(c, n, image, cfg)[0].tolist()
    pad, t2i, soi, eoi = lay.pad_id, lay.special_id("<|t2i|>"), lay.special_id("<|soi|>"), lay.special_id("<|eoi|>")
    assert ids[:9] == [pad, pad, pad, t2i, 1, 10, 11, 12, 2]  # left-padded caption
    assert ids[9] == soi and ids[-1] == eoi and ids[image_slice(cfg)] == image[0].tolist()
    uncond = t2i_sequences(c[:, :0], torch.tensor([0]), image, cfg)[0].tolist()
    assert uncond[:9] == [pad] * 6 + [t2i, 1, 2]


def test_omni_attention_mask(model):
    cfg, lay = model.config, model.config.layout
    c, n = caption(10, 11)
    ids = t2i_sequences(c, n, torch.full((1, 16), lay.mask_id), cfg)
    allowed = omni_attention_mask(ids, cfg)[0, 0] == 0
    L, img = ids.shape[1], image_slice(cfg)
    pads = (ids[0] == lay.pad_id).nonzero().flatten().tolist()
    text_rows = [i for i in range(9) if i not in pads]
    for i in text_rows:  # causal, pads hidden
        assert allowed[i, :i + 1].tolist() == [j not in pads for j in range(i + 1)] and not allowed[i, i + 1:].any()
    for i in range(img.start - 1, L):  # soi..eoi: everything but pads, both directions
        assert allowed[i].tolist() == [j not in pads for j in range(L)]
    cfg2 = cfg.__class__(**{**cfg.to_dict(), "hide_pads_from_image": False, "hide_pads_from_text": False})
    allowed2 = omni_attention_mask(ids, cfg2)[0, 0] == 0
    assert allowed2[img.start].all() and allowed2[8, :9].all()


def test_mmu_mask_and_positions(model):
    cfg, lay = model.config, model.config.layout
    image = torch.arange(16).view(1, 16) + lay.code_offset
    seq, target = mmu_sequences(image, torch.tensor([[20, 21, 0]]), torch.tensor([2]), torch.tensor([[22, 23]]),
                                torch.tensor([2]), cfg)
    allowed = mmu_attention_mask(seq, cfg)[0, 0] == 0
    P = 16 + 3  # [mmu][soi] image [eoi]
    assert allowed[:P, :P].all()  # prefix bidirectional
    assert not allowed[P + 1, P + 2:].any() and allowed[P + 1, :P + 2].all()  # causal after it
    # targets: the positions predicting the answer and <|eot|>
    assert seq[0, 1:][target[0, :-1]].tolist() == [22, 23, 2]
    padded = torch.cat([torch.full((1, 3), lay.pad_id), seq], 1)
    assert torch.equal(mmu_position_ids(padded, cfg)[0, 3:], torch.arange(seq.shape[1]))


def test_left_padding_does_not_change_outputs(model):
    cfg, lay = model.config, model.config.layout
    image = torch.randint(0, 20, (1, 16)) + lay.code_offset
    seq, _ = mmu_sequences(image, torch.tensor([[20, 21]]), torch.tensor([2]), torch.tensor([[22]]), torch.tensor([1]), cfg)
    padded = torch.cat([torch.full((1, 4), lay.pad_id), seq], 1)
    a = model(seq, mmu_attention_mask(seq, cfg), mmu_position_ids(seq, cfg))
    b = model(padded, mmu_attention_mask(padded, cfg), mmu_position_ids(padded, cfg))[:, 4:]
    assert torch.allclose(a, b, atol=1e-5)


def test_mask_ratio_and_losses_are_finite_and_trainable():
    torch.manual_seed(0)
    m = ShowoModel(preset_config("micro", **WORLD))
    cfg = m.config
    codes = torch.randint(0, 20, (8, 16))
    g = torch.Generator().manual_seed(0)
    ids, masked = mask_image_tokens(codes, cfg, g)
    assert (masked.sum(1) >= 1).all() and ((ids == cfg.layout.mask_id) == masked).all()
    assert (ids[~masked] == codes[~masked] + cfg.layout.code_offset).all()
    c = torch.randint(3, 40, (8, 6))
    n = torch.randint(1, 7, (8,))
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    first = None
    for _ in range(30):  # memorise one batch: the loss must fall
        loss = t2i_loss(m, t2i_sequences(c, n, ids, cfg), masked, codes) + lm_loss(m, c, n)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or float(loss.detach())
    assert torch.isfinite(loss) and float(loss.detach()) < 0.7 * first
    seq, target = mmu_sequences(codes + cfg.layout.code_offset, c[:, :3], torch.full((8,), 3), c[:, 3:], torch.full((8,), 2), cfg)
    assert torch.isfinite(mmu_loss(m, seq, target))


def test_checkpoint_round_trip_and_refusals(model, tmp_path):
    p = tmp_path / "m.safetensors"
    save_model(model, p)
    m2 = load_model(p)
    assert m2.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m2.state_dict().values()))
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="m.safetensors: not a readable safetensors file"):
        load_model(p)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "none.safetensors")


def test_official_showo_folder_loads(model, tmp_path):
    """A small checkpoint in Show-o's naming (`showo.` prefix, pytorch_model.safetensors) loads."""
    from safetensors.torch import save_file
    state = {f"showo.{k}": v.clone() for k, v in model.showo.state_dict().items()}
    state["vision_projector.weight"] = torch.zeros(2)  # foreign extras are ignored
    save_file(state, str(tmp_path / "pytorch_model.safetensors"))
    m = load_official_showo(tmp_path, model.config)
    ids = torch.randint(0, model.config.vocab_size, (1, 10))
    mask = mmu_attention_mask(ids, model.config)
    assert torch.equal(m(ids, mask), model(ids, mask))
    del state["showo.lm_head.bias"]
    save_file(state, str(tmp_path / "pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="not Show-o's parameters"):
        load_official_showo(tmp_path, model.config)


def test_showo_512_matches_official_parameter_names_and_shapes():
    rows = [line.split("\t") for line in (DATA / "showo-parameters.tsv").read_text().splitlines()
            if line and not line.startswith("#") and not line.startswith("name\t")]
    official = {n: tuple(int(x) for x in s.split("x")) for n, s in rows}
    with torch.device("meta"):
        m = ShowoModel(preset_config("showo-512"))
    ours = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert ours == official
    assert sum(v.numel() for v in m.state_dict().values()) == 1_448_176_770
    assert m.config.layout == VocabLayout.showo() and m.config.num_image_tokens == 1024
    assert preset_config("showo-256").num_image_tokens == 256


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown model preset 'huge'; known: " + ", ".join(PRESETS)):
        preset_config("huge", **WORLD)


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    import contextlib

    import showo_turbo.model.showo as M
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert M.has_fast_bf16("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(M, "has_fast_bf16", lambda device="cpu", native=native: native)
        assert M.resolve_precision("auto") == want
        ctx = M.autocast("auto")
        assert isinstance(ctx, torch.autocast) if native else isinstance(ctx, contextlib.nullcontext)
    assert M.resolve_precision("bf16") == "bf16" and M.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        M.resolve_precision("fp16")
