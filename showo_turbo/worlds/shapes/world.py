"""Build (stage `world`) and load the Shapes world's tokenizers and token datasets.

Layout of the world folder (`data/world/` by default):

    world.json                  summary: params, vocabulary layout, lengths, counts
    captions.json               the whole caption space with its train / held-out split
    text_tokenizer.json         HF `tokenizers` word-level tokenizer
    image_tokenizer.safetensors patch-VQ codebook
    t2i_train.safetensors       codes [N,h,w], caption [N,Lc] (right-padded with PAD), caption_len, prompt_id
    mmu_train.safetensors       codes, question [N,Lq], question_len, answer [N,La], answer_len, qtype
    eval_t2i.json               held-out prompts (structured) with one reference scene each
    eval_mmu.json               held-out questions with answers and scenes
    samples.png                 a grid of reference images with captions
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ...pipeline.io import load_json, save_json
from ...pipeline.params import to_dict
from ...model.tokenization import TextTokenizer, VocabLayout, pad_tokens, reconstruction_report
from ..common import TrainingSets, read_world_json, save_tensors, token_names, vocab_sha256
from .params import WorldParams
from .patch_vq import PatchVQ
from .scenes import (CATEGORIES, QUESTION_TYPES, Obj, Prompt, Question, Scene, WorldSpec, caption_space, questions_for,
                     random_scene, render_batch, scene_for_prompt, scene_key, split_captions, vocabulary)
from .scorer import ShapesEval

WORLD_FORMAT = "showo-turbo/world/1"
CHUNK = 4096  # images rendered and encoded at a time (bounded memory)


# --------------------------------------------------------------------------------------------
# Sampling prompts, scenes and questions.


class PromptPool:
    """Prompts grouped by category and by whether they name colours, for fast uniform sampling:
    first the group (colours named or not), then a caption, so that e.g. plain position captions
    are not drowned by the many coloured ones."""

    def __init__(self, prompts: Sequence[Prompt]):
        self.groups: dict[str, list[list[Prompt]]] = {}
        by: dict[tuple[str, bool], list[Prompt]] = {}
        for p in prompts:
            by.setdefault((p.category, any(s.colour for s in p.include)), []).append(p)
        for (cat, _), ps in by.items():
            self.groups.setdefault(cat, []).append(ps)

    def has(self, category: str) -> bool:
        return category in self.groups

    def sample(self, category: str, rng: np.random.Generator) -> Prompt:
        if category not in self.groups:
            raise ValueError(f"no {category} captions in the pool")
        groups = self.groups[category]
        group = groups[rng.integers(len(groups))]
        return group[rng.integers(len(group))]


def eval_prompts(train: Sequence[Prompt], heldout: Sequence[Prompt], per_category: int,
                 rng: np.random.Generator) -> list[Prompt]:
    """Held-out evaluation prompts: compositional ones come from the held-out captions (never seen
    in training) when there are any; the small categories reuse training captions with new scenes."""
    everything, held = PromptPool(list(train) + list(heldout)), PromptPool(heldout)
    out = []
    for cat in CATEGORIES:
        for _ in range(per_category):
            p = everything.sample(cat, rng)
            compositional = any(s.colour for s in p.include) and cat in ("position", "color_attr")
            if compositional and held.has(cat):
                p = held.sample(cat, rng)
            out.append(p)
    return out


def sample_question(scene: Scene, spec: WorldSpec, kind: str | None, rng: np.random.Generator) -> Question | None:
    qs = questions_for(scene, spec, rng)
    if kind is None:
        return qs[rng.integers(len(qs))]
    return next((q for q in qs if q.kind == kind), None)


# --------------------------------------------------------------------------------------------
# Serialising.


def scene_to_list(scene: Scene) -> list[list]:
    return [[o.shape, o.colour, o.size, o.row, o.col] for o in scene]


def scene_from_list(items) -> Scene:
    return tuple(Obj(str(s), str(c), int(z), int(r), int(q)) for s, c, z, r, q in items)


# --------------------------------------------------------------------------------------------
# The world, loaded.


@dataclass
class ShapesWorld(TrainingSets):
    """A built Shapes world folder: spec, tokenizers, layout and held-out evaluation sets (the
    `worlds.World` protocol)."""

    root: Path
    params: WorldParams
    FORMAT: ClassVar[str] = WORLD_FORMAT
    spec: WorldSpec
    text: TextTokenizer
    vq: PatchVQ
    layout: VocabLayout
    summary: dict

    @classmethod
    def load(cls, root: str | Path) -> "ShapesWorld":
        root = Path(root)
        # a folder written before worlds were plug-ins has no `kind`; its format says Shapes
        summary, wp = read_world_json(root, WORLD_FORMAT, WorldParams, {"kind": "shapes"})
        text = TextTokenizer.load(root / "text_tokenizer.json")
        vq = PatchVQ.load(root / "image_tokenizer.safetensors")
        return cls(root, wp, wp.spec(), text, vq, VocabLayout(text.text_size, vq.codebook_size), summary)

    @property
    def caption_tokens(self) -> int:
        return self.summary["lengths"]["caption"]

    @property
    def answer_tokens(self) -> int:
        return self.summary["lengths"]["answer"]

    @property
    def categories(self) -> tuple[str, ...]:
        return CATEGORIES

    def scorer(self) -> ShapesEval:
        return ShapesEval(self.spec)

    def question_ids(self, question: str) -> list[int]:
        return self.text.encode(question)

    def images_of(self, scenes: Sequence[Scene]) -> np.ndarray:
        """The scenes of `eval_t2i` / `eval_mmu`, rendered."""
        return render_batch(scenes, self.spec)

    def prompts_by_text(self) -> dict[str, Prompt]:
        """Every caption of the world (train and held out) -> its structured prompt."""
        caps = load_json(self.root / "captions.json")
        return {p["text"]: Prompt.from_dict(p) for split in caps.values() for p in split}

    def fingerprint(self) -> dict:
        """The tokenizers' contents and the lengths a teacher of this world is built for."""
        return {"text_vocab_sha256": vocab_sha256(self.text.tk.get_vocab()),
                "codebook_sha256": hashlib.sha256(self.vq.codebook.tobytes()).hexdigest(),
                "vocab_size": self.layout.vocab_size,
                "num_image_tokens": self.vq.grid_shape[0] * self.vq.grid_shape[1],
                "caption_tokens": self.caption_tokens}

    def token_names(self, ids: Sequence[int]) -> list[str]:
        """Readable names of unified-vocabulary ids: words and specials as themselves, image codes as `<img:k>`."""
        return token_names(ids, self.layout, self.text.tk.id_to_token)

    def eval_t2i(self) -> tuple[list[Prompt], list[Scene]]:
        rows = load_json(self.root / "eval_t2i.json")
        return [Prompt.from_dict(r["prompt"]) for r in rows], [scene_from_list(r["scene"]) for r in rows]

    def eval_mmu(self) -> tuple[list[Question], list[Scene]]:
        rows = load_json(self.root / "eval_mmu.json")
        return [Question(r["kind"], r["question"], r["answer"]) for r in rows], [scene_from_list(r["scene"]) for r in rows]


# --------------------------------------------------------------------------------------------
# Building.


def _encode_scenes(scenes: Sequence[Scene], spec: WorldSpec, vq: PatchVQ, desc: str) -> torch.Tensor:
    codes = np.empty((len(scenes), *vq.grid_shape), np.int64)
    for i in tqdm(range(0, len(scenes), CHUNK), desc=desc, leave=False):
        codes[i:i + CHUNK] = vq.encode(render_batch(scenes[i:i + CHUNK], spec))
    return torch.from_numpy(codes).to(torch.int32)


def build_world(wp: WorldParams, out_dir: str | Path) -> ShapesWorld:
    """Sample the world's splits, fit its tokenizers and write every file listed in the module doc."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = wp.spec()

    def rng(stream: int) -> np.random.Generator:  # independent, reproducible streams per purpose
        return np.random.default_rng([wp.seed, stream])

    # 1. Captions and their split.
    space = caption_space(spec)
    train_p, held_p = split_captions(space, wp.heldout_caption_fraction, wp.seed)
    held_texts = {p.text for p in held_p}
    prompt_id = {p.text: i for i, p in enumerate(space)}

    # 2. Held-out evaluation sets first, so that training can avoid their scenes.
    r = rng(2)
    ev_prompts = eval_prompts(train_p, held_p, wp.eval_prompts_per_category, r)
    ev_scenes = [scene_for_prompt(p, spec, r) for p in ev_prompts]
    r = rng(3)
    ev_questions, ev_q_scenes = [], []
    for kind in QUESTION_TYPES:
        while sum(q.kind == kind for q in ev_questions) < wp.eval_questions_per_type:
            sc = random_scene(spec, r)
            q = sample_question(sc, spec, kind, r)
            if q is not None:
                ev_questions.append(q)
                ev_q_scenes.append(sc)
    held_scenes = {scene_key(s) for s in ev_scenes + ev_q_scenes}

    # 3. Training scenes (never one of the evaluation scenes).
    r = rng(4)
    pool = PromptPool(train_p)
    t2i_prompts, t2i_scenes = [], []
    with tqdm(total=wp.train_t2i, desc="T2I scenes") as bar:
        while len(t2i_scenes) < wp.train_t2i:
            p = pool.sample(CATEGORIES[r.integers(len(CATEGORIES))], r)
            sc = scene_for_prompt(p, spec, r)
            if scene_key(sc) not in held_scenes:
                t2i_prompts.append(p)
                t2i_scenes.append(sc)
                bar.update()
    r = rng(5)
    mmu_q, mmu_scenes = [], []
    with tqdm(total=wp.train_mmu, desc="MMU scenes") as bar:
        while len(mmu_scenes) < wp.train_mmu:
            sc = random_scene(spec, r)
            if scene_key(sc) in held_scenes:
                continue
            mmu_q.append(sample_question(sc, spec, None, r))
            mmu_scenes.append(sc)
            bar.update()

    # 4. Tokenizers.
    text = TextTokenizer.build(vocabulary(spec))
    fit_images = render_batch(t2i_scenes[:wp.codebook_fit_images], spec)
    vq = PatchVQ.fit(fit_images, spec.palette, spec.patch_size)
    layout = VocabLayout(text.text_size, vq.codebook_size)
    text.save(out / "text_tokenizer.json")
    vq.save(out / "image_tokenizer.safetensors")

    # 5. Token datasets.
    cap_tok = text.encode_batch([p.text for p in space])
    unk = [p.text for p, ids in zip(space, cap_tok) if text.unk_id in ids]
    if unk:
        raise RuntimeError(f"captions with unknown words: {unk[:3]}")
    lengths = {"caption": max(map(len, cap_tok))}
    q_tok = text.encode_batch([q.question for q in mmu_q + ev_questions])
    a_tok = text.encode_batch([q.answer for q in mmu_q + ev_questions])
    lengths["question"] = max(map(len, q_tok))
    lengths["answer"] = max(max(map(len, a_tok)), 4 * spec.max_objects - 1)  # describe() of a full scene
    cap, cap_len = pad_tokens([cap_tok[prompt_id[p.text]] for p in t2i_prompts], lengths["caption"], layout.pad_id)
    save_tensors({"codes": _encode_scenes(t2i_scenes, spec, vq, "encode T2I"), "caption": cap, "caption_len": cap_len,
                  "prompt_id": torch.tensor([prompt_id[p.text] for p in t2i_prompts], dtype=torch.int32)},
                 out / "t2i_train.safetensors", f"{WORLD_FORMAT}/t2i")
    n = len(mmu_q)
    q, q_len = pad_tokens(q_tok[:n], lengths["question"], layout.pad_id)
    a, a_len = pad_tokens(a_tok[:n], lengths["answer"], layout.pad_id)
    save_tensors({"codes": _encode_scenes(mmu_scenes, spec, vq, "encode MMU"), "question": q, "question_len": q_len,
                  "answer": a, "answer_len": a_len,
                  "qtype": torch.tensor([QUESTION_TYPES.index(x.kind) for x in mmu_q], dtype=torch.int32)},
                 out / "mmu_train.safetensors", f"{WORLD_FORMAT}/mmu")

    # 6. Evaluation sets and summaries (world.json last: its presence marks a complete world).
    save_json([{"prompt": p.to_dict(), "scene": scene_to_list(s)} for p, s in zip(ev_prompts, ev_scenes)], out / "eval_t2i.json")
    save_json([{"kind": x.kind, "question": x.question, "answer": x.answer, "scene": scene_to_list(s)}
               for x, s in zip(ev_questions, ev_q_scenes)], out / "eval_mmu.json")
    save_json({"train": [p.to_dict() for p in train_p], "heldout": [p.to_dict() for p in held_p]}, out / "captions.json")
    summary = {
        "format": WORLD_FORMAT,
        "params": to_dict(wp),
        "layout": {"text_size": layout.text_size, "codebook_size": layout.codebook_size, "code_offset": layout.code_offset,
                   "mask_id": layout.mask_id, "pad_id": layout.pad_id, "vocab_size": layout.vocab_size},
        "image_tokenizer": vq.describe(),
        "lengths": lengths,
        "captions": {"total": len(space), "train": len(train_p), "heldout": len(held_p),
                     "by_category": {c: sum(p.category == c for p in space) for c in CATEGORIES},
                     "distinct_in_t2i_train": len({p.text for p in t2i_prompts}),
                     "eval_prompts_unseen": sum(p.text in held_texts for p in ev_prompts)},
        "counts": {"t2i_train": len(t2i_scenes), "mmu_train": len(mmu_scenes), "eval_t2i": len(ev_prompts),
                   "eval_mmu": len(ev_questions)},
    }
    save_json(summary, out / "world.json")
    return ShapesWorld(out, wp, spec, text, vq, layout, summary)


# --------------------------------------------------------------------------------------------
# Sanity metrics of the stage.


def mismatched_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    """For each prompt, the next prompt of the same category (cyclically) whose caption differs."""
    out = []
    for i, p in enumerate(prompts):
        same = [q for q in prompts[i + 1:] + prompts[:i] if q.category == p.category and q.text != p.text]
        out.append(same[0] if same else p)
    return out


def world_metrics(world: ShapesWorld) -> dict:
    """ShapesEval on held-out reference scenes: rendered, tokenizer round trip, against another
    scene's caption, and all-black. Plus the tokenizer's reconstruction error."""
    prompts, scenes = world.eval_t2i()
    images = render_batch(scenes, world.spec)
    recon = world.vq.decode(world.vq.encode(images))
    scorer = ShapesEval(world.spec)
    b = world.params.bootstrap
    res = {
        "ground_truth": scorer.score(images, prompts, b).to_dict(),
        "reconstructed": scorer.score(recon, prompts, b).to_dict(),
        "mismatched": scorer.score(images, mismatched_prompts(prompts), b).to_dict(),
        "blank": scorer.score(np.zeros_like(images), prompts, b).to_dict(),
    }
    _, q_scenes = world.eval_mmu()
    all_images = np.concatenate([images, render_batch(q_scenes, world.spec)])
    return {"shapes_eval": res, "tokenizer": {**world.vq.describe(), **reconstruction_report(world.vq, all_images)},
            "captions": world.summary["captions"], "counts": world.summary["counts"],
            "vocab_size": world.layout.vocab_size}


# Thresholds the world stage must meet for ShapesEval to be a trustworthy judge of this world.
WORLD_CHECKS = {"ground_truth": (">=", 0.99), "reconstructed": (">=", 0.97), "mismatched": ("<=", 0.2), "blank": ("==", 0.0)}


def check_world_metrics(metrics: dict) -> None:
    """Raise if ShapesEval cannot judge this world (see WORLD_CHECKS)."""
    bad = []
    for arm, (op, bound) in WORLD_CHECKS.items():
        v = metrics["shapes_eval"][arm]["score"]
        if not {">=": v >= bound, "<=": v <= bound, "==": v == bound}[op]:
            bad.append(f"shapes_eval.{arm}.score = {v:.3f}, needs {op} {bound}")
    if bad:
        raise RuntimeError("ShapesEval cannot judge this world: " + "; ".join(bad))


def load_world(root: str | Path) -> ShapesWorld:
    return ShapesWorld.load(root)


def preview(world: ShapesWorld, per_category: int = 2) -> tuple[np.ndarray, list[str]]:
    """Reference images of the first held-out prompts of each category, with their captions."""
    prompts, scenes = world.eval_t2i()
    pick = [i for c in CATEGORIES for i in [j for j, p in enumerate(prompts) if p.category == c][:per_category]]
    return render_batch([scenes[i] for i in pick], world.spec), [prompts[i].text for i in pick]


def summary_tables(world: ShapesWorld) -> dict[str, dict]:
    """The world stage's report tables: captions per category, and the world's sizes."""
    s = world.summary
    by_cat = s["captions"]["by_category"]
    total = sum(by_cat.values())
    return {"captions": {c: {"captions": n, "share": round(n / total, 3)} for c, n in by_cat.items()},
            "world": {**s["counts"], **{f"caption_tokens_max_{k}": v for k, v in s["lengths"].items()},
                      "distinct_captions": s["captions"]["total"], "heldout_captions": s["captions"]["heldout"],
                      "distinct_captions_in_t2i_train": s["captions"]["distinct_in_t2i_train"],
                      "eval_prompts_with_unseen_caption": s["captions"]["eval_prompts_unseen"],
                      **{f"vocab_{k}": v for k, v in s["layout"].items()}}}


def metrics_table(metrics: dict) -> dict[str, dict]:
    """ShapesEval on the reference scenes (rows: ground truth, reconstructed, mismatched, blank)."""
    return {arm: {k: r[k] for k in ("score", "ci_low", "ci_high", *CATEGORIES)} for arm, r in metrics["shapes_eval"].items()}
