"""Show-o's text tokenizer: Phi-1.5's (CodeGen byte-level BPE) from a local folder, with Show-o's
tokens added after it in Show-o's order.

Facts (Show-o's code and the published phi-1_5 folder): 50,295 text tokens (38 added whitespace
tokens at 50257-50294); `<|endoftext|>` (50256) is both <|sot|> and <|eot|>; Show-o adds `[PAD]`
(50295, the pad token) and `<|soi|> <|eoi|> <|sov|> <|eov|> <|t2i|> <|mmu|> <|t2v|> <|v2v|> <|lvg|>`
(50296-50304); image codes follow at 50305 + c and [MASK] is last (`VocabLayout.showo()`).
Loaded with `local_files_only`: the hub is never asked.

    tok = load_phi_tokenizer("checkpoints/phi-1_5")
    tok.layout(8192) == VocabLayout.showo()
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...model.tokenization import SHOWO_SPECIALS, TokenizerFileError, VocabLayout

ENDOFTEXT = "<|endoftext|>"


class ShowoPhiTokenizer:
    """The text side of the TextTokenizer interface (ids, sot/eot, encode/decode) over a transformers
    tokenizer that carries Show-o's tokens."""

    def __init__(self, hf_tokenizer, text_size: int):
        self.hf, self.text_size = hf_tokenizer, text_size

    def token_id(self, token: str) -> int:
        i = self.hf.convert_tokens_to_ids(token)
        if i is None or i == self.hf.unk_token_id and token != self.hf.unk_token:
            raise KeyError(f"unknown token {token!r}")
        return int(i)

    @property
    def sot_id(self) -> int:
        return self.token_id(ENDOFTEXT)

    @property
    def eot_id(self) -> int:
        return self.token_id(ENDOFTEXT)

    @property
    def pad_id(self) -> int:
        return self.token_id(SHOWO_SPECIALS[0])

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def layout(self, codebook_size: int) -> VocabLayout:
        return VocabLayout(text_size=self.text_size, codebook_size=codebook_size)

    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.hf(list(texts), add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def mmu_question_ids(self, question: str) -> list[int]:
        """Show-o's MMU text after the image: `'USER: \\n' + question + ' ASSISTANT:'`."""
        return self.encode("USER: \n" + question + " ASSISTANT:")


def _check_files(folder: Path) -> None:
    if not folder.is_dir():
        raise TokenizerFileError(f"{folder}: not a folder (expected phi-1_5's tokenizer files)")
    if not (folder / "tokenizer_config.json").is_file():
        raise TokenizerFileError(f"{folder / 'tokenizer_config.json'}: not found (a transformers tokenizer folder needs it)")
    if not (folder / "tokenizer.json").is_file():
        for name in ("vocab.json", "merges.txt"):
            if not (folder / name).is_file():
                raise TokenizerFileError(f"{folder / name}: not found (and no tokenizer.json to use instead)")


def load_phi_tokenizer(folder: str | Path) -> ShowoPhiTokenizer:
    """Phi's tokenizer from `folder` (tokenizer.json or vocab.json + merges.txt, tokenizer_config.json,
    special_tokens_map.json, added_tokens.json), Show-o's tokens appended and the layout checked.
    A folder that already carries Show-o's tokens (as Show-o saves it) is accepted when they sit
    where they should."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    _check_files(folder)
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises OSError / ValueError / JSON errors for broken folders
        raise TokenizerFileError(f"{folder}: not a readable tokenizer folder ({type(e).__name__}: {str(e)[:160]})") from None
    vocab = hf.get_vocab()
    if ENDOFTEXT not in vocab:
        raise TokenizerFileError(f"{folder}: no {ENDOFTEXT} token (not Phi's tokenizer)")
    present = [t for t in SHOWO_SPECIALS if t in vocab]
    if present and len(present) < len(SHOWO_SPECIALS):
        raise TokenizerFileError(f"{folder}: has some of Show-o's tokens ({present}) but not all")
    text_size = vocab[SHOWO_SPECIALS[0]] if present else len(hf)
    if not present:
        hf.add_special_tokens({"pad_token": SHOWO_SPECIALS[0]})
        hf.add_tokens(list(SHOWO_SPECIALS[1:]), special_tokens=True)
    ids = [hf.convert_tokens_to_ids(t) for t in SHOWO_SPECIALS]
    if ids != list(range(text_size, text_size + len(SHOWO_SPECIALS))) or len(hf) != text_size + len(SHOWO_SPECIALS):
        raise TokenizerFileError(f"{folder}: Show-o's tokens must follow the text vocabulary ({text_size}) in order, got ids {ids}")
    return ShowoPhiTokenizer(hf, text_size)
