"""Phi's tokenizer from a local folder with Show-o's tokens: a small byte-level BPE written in
phi-1_5's file formats (vocab.json, merges.txt, added_tokens.json, special_tokens_map.json,
tokenizer_config.json) stands in for the real folder."""

import json
import shutil
from pathlib import Path

import pytest

import showo_turbo
from official_folders import ADDED, write_phi_folder
from showo_turbo.worlds.showo.phi_tokenizer import ENDOFTEXT, load_phi_tokenizer
from showo_turbo.model.tokenization import SHOWO_SPECIALS, TokenizerFileError, VocabLayout

@pytest.fixture(scope="module")
def phi_folder(tmp_path_factory) -> Path:
    return write_phi_folder(tmp_path_factory.mktemp("phi"), with_config=False)


def test_showo_tokens_follow_the_text_vocabulary_in_order(phi_folder):
    base = len(json.loads((phi_folder / "vocab.json").read_text()))
    tok = showo_turbo.load_phi_tokenizer(phi_folder)
    text = base + len(ADDED)  # like phi-1_5: 50,257 BPE + 38 added = 50,295
    assert tok.text_size == text and tok.pad_id == text
    assert [tok.token_id(t) for t in SHOWO_SPECIALS] == list(range(text, text + 10))
    assert tok.sot_id == tok.eot_id == tok.token_id(ENDOFTEXT)
    lay = tok.layout(8192)
    assert lay.pad_id == text and lay.special_id("<|t2i|>") == text + 5 and lay.code_offset == text + 10
    assert lay.mask_id == text + 10 + 8192 and lay.vocab_size == tok.vocab_size + 8192 + 1
    # the official sizes give the official layout
    assert VocabLayout(text_size=50295, codebook_size=8192) == VocabLayout.showo() and VocabLayout.showo().vocab_size == 58498
    ids = tok.encode("a red circle left of a blue square")
    assert max(ids) < base and tok.decode(ids) == "a red circle left of a blue square"
    assert tok.decode(tok.encode("x" + ADDED[0] + "y")) == "x" + ADDED[0] + "y"
    assert tok.mmu_question_ids("how many?") == tok.encode("USER: \nhow many? ASSISTANT:")


def test_a_folder_saved_with_showo_tokens_loads_the_same(phi_folder, tmp_path):
    tok = load_phi_tokenizer(phi_folder)
    tok.hf.save_pretrained(str(tmp_path / "saved"))
    again = load_phi_tokenizer(tmp_path / "saved")
    assert again.text_size == tok.text_size and again.vocab_size == tok.vocab_size
    assert again.encode("two green triangles") == tok.encode("two green triangles")


def test_missing_files_are_named(phi_folder, tmp_path):
    for name in ("merges.txt", "tokenizer_config.json"):
        broken = tmp_path / name
        shutil.copytree(phi_folder, broken)
        (broken / name).unlink()
        with pytest.raises(TokenizerFileError, match=f"{name}: not found"):
            load_phi_tokenizer(broken)
    with pytest.raises(TokenizerFileError, match="not a folder"):
        load_phi_tokenizer(tmp_path / "nope")
    partial = tmp_path / "partial"
    shutil.copytree(phi_folder, partial)
    added = json.loads((partial / "added_tokens.json").read_text())
    (partial / "added_tokens.json").write_text(json.dumps({**added, "[PAD]": max(added.values()) + 1}))
    with pytest.raises(TokenizerFileError, match="some of Show-o's tokens"):
        load_phi_tokenizer(partial)
