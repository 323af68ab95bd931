"""Build (stage `world`) and load the real Show-o world.

The world folder (`data/world/`) holds what the stages need in token form; the tokenizers stay in
their own folders, named in world.json:

    world.json              format, params, vocabulary layout, lengths, counts, tokenizer fingerprints
    t2i_train.safetensors   caption [N, Lc] (right-padded with PAD, cut at caption_tokens), caption_len, prompt_id
    mmu_train.safetensors   codes [N, h, w] (MAGVIT-v2), question (Show-o's `USER: ... ASSISTANT:` form), answer, lens, qtype
    eval_t2i.jsonl          the GenEval prompts, line for line
    eval_mmu.jsonl          held-out questions with absolute image paths
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ...pipeline.io import save_json
from ...pipeline.shards import sha256_of
from ...pipeline.params import to_dict
from ...model.tokenization import VocabLayout, pad_tokens
from .. import WorldFileError
from ..common import TrainingSets, read_world_json, save_tensors, token_names, vocab_sha256
from .files import GenEvalPrompt, MMUItem, load_images, read_captions, read_geneval, read_mmu
from .params import ShowoWorldParams

WORLD_FORMAT = "showo-turbo/showo-world/1"


def _tokenizers(wp: ShowoWorldParams):
    from .magvit import load_magvitv2
    from .phi_tokenizer import load_phi_tokenizer

    return load_phi_tokenizer(wp.tokenizer_dir), load_magvitv2(wp.magvit_dir, wp.image_size, wp.device)


@dataclass
class ShowoWorld(TrainingSets):
    """A built real-Show-o world folder (the `worlds.World` protocol). No scorer: T2I images go to
    GenEval through `export_images`."""

    root: Path
    params: ShowoWorldParams
    FORMAT: ClassVar[str] = WORLD_FORMAT
    text: object   # phi_tokenizer.ShowoPhiTokenizer
    vq: object     # magvit.MAGVITv2
    layout: VocabLayout
    summary: dict

    @classmethod
    def load(cls, root: str | Path) -> "ShowoWorld":
        root = Path(root)
        summary, wp = read_world_json(root, WORLD_FORMAT, ShowoWorldParams)
        path = root / "world.json"
        text, vq = _tokenizers(wp)
        world = cls(root, wp, text, vq, text.layout(vq.codebook_size), summary)
        if world.fingerprint() != summary["fingerprint"]:
            raise WorldFileError(f"{path}: the tokenizer folders changed since the world was built "
                                 f"({wp.tokenizer_dir}, {wp.magvit_dir}); rerun `dvc repro world`")
        return world

    # -- the World protocol ------------------------------------------------------------------
    @property
    def caption_tokens(self) -> int:
        return self.params.caption_tokens

    @property
    def answer_tokens(self) -> int:
        return self.params.answer_tokens

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.category for p in self.eval_t2i()[0]))

    def eval_t2i(self) -> tuple[list[GenEvalPrompt], list]:
        prompts = read_geneval(self.root / "eval_t2i.jsonl")
        return prompts, [None] * len(prompts)

    def eval_mmu(self) -> tuple[list[MMUItem], list[str]]:
        items = read_mmu(self.root / "eval_mmu.jsonl")
        return items, [q.image for q in items]

    def images_of(self, paths: Sequence[str]) -> np.ndarray:
        return load_images(paths, self.params.image_size)

    def question_ids(self, question: str) -> list[int]:
        return self.text.mmu_question_ids(question)

    def scorer(self):
        return None  # GenEval's detector runs outside the workbench (export_images)

    def export_images(self, images: np.ndarray, prompts: Sequence[GenEvalPrompt], images_per_prompt: int,
                      out_dir: str | Path) -> Path:
        from .geneval import export_geneval

        return export_geneval(images, prompts, images_per_prompt, out_dir)

    def token_names(self, ids: Sequence[int]) -> list[str]:
        return token_names(ids, self.layout, self.text.hf.convert_ids_to_tokens)

    def prompts_by_text(self) -> dict[str, GenEvalPrompt]:
        return {p.text: p for p in self.eval_t2i()[0]}

    def fingerprint(self) -> dict:
        return {"text_vocab_sha256": vocab_sha256(self.text.hf.get_vocab()),
                "magvit_sha256": sha256_of(Path(self.params.magvit_dir) / "pytorch_model.safetensors"),
                "vocab_size": self.layout.vocab_size,
                "num_image_tokens": self.vq.grid_shape[0] * self.vq.grid_shape[1],
                "caption_tokens": self.caption_tokens}


# --------------------------------------------------------------------------------------------
# Building.


def _encode(vq, paths: Sequence[str], size: int, batch: int) -> torch.Tensor:
    codes = np.empty((len(paths), *vq.grid_shape), np.int64)
    for i in tqdm(range(0, len(paths), batch), desc="MAGVIT-v2 encode", leave=False):
        codes[i:i + batch] = vq.encode(load_images(paths[i:i + batch], size))
    return torch.from_numpy(codes).to(torch.int32)


def build_world(wp: ShowoWorldParams, out_dir: str | Path) -> ShowoWorld:
    """Read the prompt and question files, tokenise them (captions cut at caption_tokens), encode
    the MMU training images with MAGVIT-v2 and write the world folder (world.json last)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text, vq = _tokenizers(wp)
    layout = text.layout(vq.codebook_size)
    # 1. Files, checked line by line.
    captions = read_captions(wp.t2i_train)
    eval_prompts = read_geneval(wp.t2i_eval)
    mmu, mmu_eval = read_mmu(wp.mmu_train), read_mmu(wp.mmu_eval)
    # 2. T2I captions (Show-o cuts long captions; how many were cut is reported).
    ids = text.encode_batch(captions)
    cut = sum(len(x) > wp.caption_tokens for x in ids)
    cap, cap_len = pad_tokens([x[:wp.caption_tokens] for x in ids], wp.caption_tokens, layout.pad_id)
    save_tensors({"caption": cap, "caption_len": cap_len, "prompt_id": torch.arange(len(captions), dtype=torch.int32)},
                 out / "t2i_train.safetensors", f"{WORLD_FORMAT}/t2i")
    # 3. MMU: image codes, Show-o's question form, answers.
    kinds = sorted({q.kind for q in mmu})
    q_ids = [text.mmu_question_ids(q.question) for q in mmu]
    a_ids = [text.encode(q.answer) for q in mmu]
    q, q_len = pad_tokens(q_ids, max(map(len, q_ids)), layout.pad_id)
    a, a_len = pad_tokens(a_ids, max(map(len, a_ids)), layout.pad_id)
    save_tensors({"codes": _encode(vq, [x.image for x in mmu], wp.image_size, wp.encode_batch), "question": q, "question_len": q_len,
                  "answer": a, "answer_len": a_len,
                  "qtype": torch.tensor([kinds.index(x.kind) for x in mmu], dtype=torch.int32)},
                 out / "mmu_train.safetensors", f"{WORLD_FORMAT}/mmu")
    # 4. Evaluation sets, verbatim (GenEval's lines; image paths made absolute).
    (out / "eval_t2i.jsonl").write_text("".join(json.dumps(p.metadata) + "\n" for p in eval_prompts))
    (out / "eval_mmu.jsonl").write_text("".join(json.dumps({"image": x.image, "question": x.question, "answer": x.answer,
                                                            "kind": x.kind, "references": list(x.references)}) + "\n"
                                                for x in mmu_eval))
    world = ShowoWorld(out, wp, text, vq, layout, {})
    world.summary = {
        "format": WORLD_FORMAT, "params": to_dict(wp), "fingerprint": world.fingerprint(),
        "layout": {"text_size": layout.text_size, "codebook_size": layout.codebook_size, "code_offset": layout.code_offset,
                   "mask_id": layout.mask_id, "pad_id": layout.pad_id, "vocab_size": layout.vocab_size},
        "lengths": {"caption": wp.caption_tokens, "question": int(q.shape[1]), "answer": wp.answer_tokens},
        "counts": {"t2i_train": len(captions), "captions_cut": cut, "mmu_train": len(mmu), "eval_t2i": len(eval_prompts),
                   "eval_mmu": len(mmu_eval)},
        "eval_categories": {c: sum(p.category == c for p in eval_prompts) for c in dict.fromkeys(p.category for p in eval_prompts)},
    }
    save_json(world.summary, out / "world.json")
    return world


def load_world(root: str | Path) -> ShowoWorld:
    return ShowoWorld.load(root)


def world_metrics(world: ShowoWorld) -> dict:
    """The stage's figures: counts, lengths, the layout, and MAGVIT-v2's round trip on the first held-out images."""
    from ...model.tokenization import reconstruction_report

    _, paths = world.eval_mmu()
    images = world.images_of(paths[:8])
    return {"counts": world.summary["counts"], "lengths": world.summary["lengths"], "vocab_size": world.layout.vocab_size,
            "eval_categories": world.summary["eval_categories"],
            "tokenizer": {"codebook_size": world.vq.codebook_size, "grid": list(world.vq.grid_shape),
                          **reconstruction_report(world.vq, images)}}


def check_world_metrics(metrics: dict) -> None:
    """Nothing to judge without a scorer; the files were checked while building."""


def preview(world: ShowoWorld, per_category: int = 2) -> tuple[np.ndarray, list[str]]:
    """The first held-out MMU images with their questions (the T2I prompts have no reference images)."""
    items, paths = world.eval_mmu()
    n = min(len(items), 6 * per_category)
    return world.images_of(paths[:n]), [q.question for q in items[:n]]


def summary_tables(world: ShowoWorld) -> dict[str, dict]:
    """The world stage's report tables: evaluation prompts per GenEval tag, and the world's sizes."""
    s = world.summary
    return {"evaluation prompts": {c: {"prompts": n} for c, n in s["eval_categories"].items()},
            "world": {**s["counts"], **{f"tokens_max_{k}": v for k, v in s["lengths"].items()},
                      **{f"vocab_{k}": v for k, v in s["layout"].items()}}}


def metrics_table(metrics: dict) -> dict[str, dict]:
    """MAGVIT-v2's round trip on held-out images (no T2I scorer runs inside the workbench)."""
    return {"magvit_round_trip": {k: metrics["tokenizer"][k] for k in ("pixel_mse", "pixel_mae", "exact_images", "images")}}
