"""The evaluation harness every world shares: captions -> images through the MaskGIT sampler,
scored by the world's scorer per step count and CFG scale, and MMU answer accuracy with forward
passes per token. A world supplies its prompts, questions, tokenizers and scorer
(`worlds.World`); nothing here knows a particular world.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..model.tokenization import pad_tokens
from ..worlds import EvalPrompt, World


def eval_prompts_subset(world: World, per_category: int) -> list[EvalPrompt]:
    """The first `per_category` held-out prompts of every category of the world (the scored set)."""
    prompts, _ = world.eval_t2i()
    out = []
    for c in world.categories:
        out += [p for p in prompts if p.category == c][:per_category]
    return out



# --------------------------------------------------------------------------------------------
# Sweeps over a model: T2I (the world's scorer per step count and CFG scale) and MMU (answer accuracy).


def encode_captions(world: World, texts: Sequence[str]):
    """Right-padded caption ids [B, Lc] and lengths for the model's T2I prompts."""
    ids = world.text.encode_batch(list(texts))
    caps, lens = pad_tokens(ids, world.caption_tokens, world.layout.pad_id)
    return caps.long(), lens.long()


def sampler_settings(**sampler) -> dict:
    """`t2i_generate`'s settings that decide the codes, defaults filled in (the key of a stored set)."""
    import inspect
    from ..model.sampling import t2i_generate
    skip = {"model", "captions", "caption_len", "steps", "cfg_scale", "generator", "return_trajectory", "trajectory_top_k"}
    settings = {k: v.default for k, v in inspect.signature(t2i_generate).parameters.items() if k not in skip}
    unknown = set(sampler) - set(settings)
    if unknown:
        raise TypeError(f"unknown sampler settings: {sorted(unknown)}")
    return {**settings, **sampler}


class CodeSets(NamedTuple):
    """`generate_codes`' result: the codes [images_per_prompt * len(prompts), N] and how many of
    the `images_per_prompt` sets were taken from the store instead of drawn."""

    codes: "torch.Tensor"
    reused: int


def generate_codes(model, world: World, prompts: Sequence[EvalPrompt], steps: int, cfg_scale: float = 0.0,
                   images_per_prompt: int = 1, seed: int = 0, batch_size: int = 64, precision: str = "fp32",
                   store=None, model_sha256: str = "", **sampler) -> CodeSets:
    """Image codes from the MaskGIT sampler (forward passes in `precision`): image i of every prompt
    is drawn with seed `seed + i`, one generator running across the batches of that set. With a
    `store` (sample_store.SampleStore) and the model's weights hash, a set already stored under the
    same key is taken from it and a new one is added to it."""
    import torch
    from ..model.showo import autocast, resolve_precision
    from .sample_store import sample_key
    from ..model.sampling import t2i_generate
    texts = [p.text for p in prompts]
    caps, lens = encode_captions(world, texts)
    settings = sampler_settings(**sampler)
    sets, reused = [], 0
    for i in range(images_per_prompt):
        key = None
        if store is not None and model_sha256:
            key = sample_key(model_sha256, texts, steps, cfg_scale, seed + i, batch_size,
                             resolve_precision(precision, model.device), model.device.type, settings)
            found = store.get(key)
            if found is not None:
                sets.append(found.long())
                reused += 1
                continue
        g = torch.Generator().manual_seed(seed + i)
        codes = []
        for b in range(0, len(prompts), batch_size):
            with autocast(precision, model.device):
                r = t2i_generate(model, caps[b:b + batch_size], lens[b:b + batch_size], steps=steps, cfg_scale=cfg_scale,
                                 generator=g, **settings)
            codes.append(r.codes.cpu())
        sets.append(torch.cat(codes))
        if key is not None:
            store.put(key, sets[-1])
    return CodeSets(torch.cat(sets), reused)


def decode_codes(world: World, codes) -> np.ndarray:
    """Pixels of image codes [B, N] through the world's image tokenizer."""
    g_h, g_w = world.vq.grid_shape
    return world.vq.decode(codes.reshape(-1, g_h, g_w).numpy())


def generate_images(model, world: World, prompts: Sequence[EvalPrompt], steps: int, cfg_scale: float = 0.0, batch_size: int = 64,
                    seed: int = 0, precision: str = "fp32", images_per_prompt: int = 1, **sampler) -> np.ndarray:
    """Images for `prompts` (`generate_codes`, image i of every prompt with seed `seed + i`), decoded
    by the world's image tokenizer."""
    return decode_codes(world, generate_codes(model, world, prompts, steps, cfg_scale, images_per_prompt, seed, batch_size,
                                              precision, **sampler).codes)


def t2i_sweep(model, world: World, prompts: Sequence[EvalPrompt], steps: Sequence[int], cfg_scales: Sequence[float],
              bootstrap: int = 1000, seed: int = 0, progress: bool = True, images_per_prompt: int = 1, batch_size: int = 64,
              store=None, model_sha256: str = "", **sampler) -> dict[str, dict]:
    """{'steps_<T>.cfg_<s>': the world scorer's dict} for every step count and CFG scale, over
    `images_per_prompt` seeded images per prompt; {} for a world without a scorer (no images are
    drawn then). `store` / `model_sha256` as generate_codes' (the sampled codes are kept there)."""
    from tqdm.auto import tqdm
    scorer = world.scorer()
    if scorer is None:
        return {}
    scored = [p for _ in range(images_per_prompt) for p in prompts]  # generate_codes' order
    out = {}
    grid = [(t, s) for t in steps for s in cfg_scales]
    for t, s in tqdm(grid, desc="T2I sweep", disable=not progress):
        codes = generate_codes(model, world, prompts, t, s, images_per_prompt, seed, batch_size, store=store,
                               model_sha256=model_sha256, **sampler).codes
        out[f"steps_{t}.cfg_{s:g}"] = scorer.score(decode_codes(world, codes), scored, bootstrap, seed).to_dict()
    return out


def mmu_prompts(world: World, questions, images, cfg):
    """Left-padded MMU prompts `[mmu][soi] image [eoi][sot] question` for held-out questions;
    `images` as `world.eval_mmu()` gives them (`world.images_of` turns them into pixels)."""
    import torch
    from ..model.showo import mmu_prefix
    from ..model.sampling import left_pad
    codes = torch.from_numpy(world.vq.encode(world.images_of(images))).view(len(questions), -1)
    prefix = mmu_prefix(codes + world.layout.code_offset, cfg)
    rows = [torch.cat([prefix[i], torch.tensor(world.question_ids(q.question), dtype=torch.long)]) for i, q in enumerate(questions)]
    return left_pad(rows, world.layout.pad_id)


def _caption_words(text: str) -> str:
    """Lower case, punctuation dropped, single spaces (what COCO's PTB tokenizer leaves of a caption)."""
    return " ".join("".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split())


def cider(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """CIDEr-D of captions against each image's reference captions (pycocoevalcap's implementation;
    document frequencies from these references, as in COCO's evaluation)."""
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [_caption_words(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_caption_words(c)] for i, c in enumerate(candidates)}
    return float(Cider().compute_score(gts, res)[0])


def mmu_eval(model, world: World, decoder: str = "ar", batch_size: int = 64, max_new_tokens: int | None = None,
             block_size: int = 16, seed: int = 0, precision: str = "fp32", jacobi_stop: str = "block",
             limit: int | None = None, kind: str | None = None) -> dict:
    """Exact-match answer accuracy on the held-out questions, per question type too, with forward
    passes per generated token (per row as if decoded alone, prefill included, so AR gives exactly
    1.0; per type too) and tokens per second. A type whose items carry reference captions
    (`references`, e.g. captioning) is also scored by CIDEr-D (`cider_<kind>`). Forward passes run in
    `precision`; `jacobi_stop` is `jacobi_generate`'s `stop` ("block" or "eot"); `kind`: only the
    questions of that type; `limit`: only the first that many questions."""
    import time

    import torch
    from ..model.showo import autocast
    from ..model.sampling import ar_generate, jacobi_generate
    questions, images = world.eval_mmu()
    if kind is not None:
        keep = [i for i, q in enumerate(questions) if q.kind == kind]
        questions, images = [questions[i] for i in keep], [images[i] for i in keep]
    if limit is not None:
        questions, images = questions[:limit], images[:limit]
    prompts = mmu_prompts(world, questions, images, model.config)
    max_new = max_new_tokens or world.answer_tokens + 1
    g = torch.Generator().manual_seed(seed)
    answers, forwards, tokens, seconds = [], [], [], 0.0
    if decoder not in ("ar", "jacobi"):
        raise ValueError(f"decoder must be 'ar' or 'jacobi', got {decoder!r}")
    for i in range(0, len(questions), batch_size):
        batch = prompts[i:i + batch_size]
        t0 = time.perf_counter()
        with autocast(precision, model.device):
            if decoder == "ar":
                r = ar_generate(model, batch, max_new_tokens=max_new)
                row_forwards = [len(t) for t in r.tokens]  # the prefill yields token 1, then one pass per token
            else:
                r = jacobi_generate(model, batch, max_new_tokens=max_new, block_size=block_size, generator=g,
                                    stop=jacobi_stop)
                row_forwards = r.stats["row_forwards"]  # prefill included, as for AR
        seconds += time.perf_counter() - t0
        forwards += list(row_forwards)
        tokens += [len(t) for t in r.tokens]
        answers += [world.text.decode([x for x in t if x != model.config.eot_id]) for t in r.tokens]
    correct = [a == q.answer for a, q in zip(answers, questions)]
    out = {"accuracy": float(np.mean(correct)), "forwards_per_token": sum(forwards) / max(sum(tokens), 1),
           "tokens_per_second": sum(tokens) / max(seconds, 1e-9), "n_questions": len(questions)}
    for k in sorted({q.kind for q in questions}):
        rows = [i for i, q in enumerate(questions) if q.kind == k]
        out[f"accuracy_{k}"] = float(np.mean([correct[i] for i in rows]))
        out[f"forwards_per_token_{k}"] = sum(forwards[i] for i in rows) / max(sum(tokens[i] for i in rows), 1)
        if all(getattr(questions[i], "references", ()) for i in rows):
            out[f"cider_{k}"] = cider([answers[i] for i in rows], [questions[i].references for i in rows])
    out["examples"] = [{"question": q.question, "answer": q.answer, "got": a} for q, a in list(zip(questions, answers))[:5]]
    return out
