"""The evaluation harness every world shares: captions -> images through the MaskGIT sampler,
scored by the world's scorer per step count and CFG scale, and MMU answer accuracy with forward
passes per token. A world supplies its prompts, questions, tokenizers and scorer
(`worlds.World`); nothing here knows a particular world.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .tokenization import pad_tokens
from .worlds import EvalPrompt, World


# --------------------------------------------------------------------------------------------
# Sweeps over a model: T2I (the world's scorer per step count and CFG scale) and MMU (answer accuracy).


def encode_captions(world: World, texts: Sequence[str]):
    """Right-padded caption ids [B, Lc] and lengths for the model's T2I prompts."""
    ids = world.text.encode_batch(list(texts))
    caps, lens = pad_tokens(ids, world.caption_tokens, world.layout.pad_id)
    return caps.long(), lens.long()


def generate_images(model, world: World, prompts: Sequence[EvalPrompt], steps: int, cfg_scale: float = 0.0, batch_size: int = 64,
                    seed: int = 0, precision: str = "fp32", **sampler) -> np.ndarray:
    """Images for `prompts` from the MaskGIT sampler (forward passes in `precision`), decoded by the
    world's image tokenizer."""
    import torch
    from .model import autocast
    from .sampling import t2i_generate
    caps, lens = encode_captions(world, [p.text for p in prompts])
    g = torch.Generator().manual_seed(seed)
    codes = []
    for i in range(0, len(prompts), batch_size):
        with autocast(precision, model.device):
            r = t2i_generate(model, caps[i:i + batch_size], lens[i:i + batch_size], steps=steps, cfg_scale=cfg_scale,
                             generator=g, **sampler)
        codes.append(r.codes)
    g_h, g_w = world.vq.grid_shape
    return world.vq.decode(torch.cat(codes).view(-1, g_h, g_w).numpy())


def t2i_sweep(model, world: World, prompts: Sequence[EvalPrompt], steps: Sequence[int], cfg_scales: Sequence[float],
              bootstrap: int = 1000, seed: int = 0, progress: bool = True, **sampler) -> dict[str, dict]:
    """{'steps_<T>.cfg_<s>': the world scorer's dict} for every step count and CFG scale; {} for a
    world without a scorer (no images are drawn then)."""
    from tqdm.auto import tqdm
    scorer = world.scorer()
    if scorer is None:
        return {}
    out = {}
    grid = [(t, s) for t in steps for s in cfg_scales]
    for t, s in tqdm(grid, desc="T2I sweep", disable=not progress):
        images = generate_images(model, world, prompts, t, s, seed=seed, **sampler)
        out[f"steps_{t}.cfg_{s:g}"] = scorer.score(images, prompts, bootstrap, seed).to_dict()
    return out


def mmu_prompts(world: World, questions, images, cfg):
    """Left-padded MMU prompts `[mmu][soi] image [eoi][sot] question` for held-out questions;
    `images` as `world.eval_mmu()` gives them (`world.images_of` turns them into pixels)."""
    import torch
    from .model import mmu_prefix
    from .sampling import left_pad
    codes = torch.from_numpy(world.vq.encode(world.images_of(images))).view(len(questions), -1)
    prefix = mmu_prefix(codes + world.layout.code_offset, cfg)
    rows = [torch.cat([prefix[i], torch.tensor(world.question_ids(q.question), dtype=torch.long)]) for i, q in enumerate(questions)]
    return left_pad(rows, world.layout.pad_id)


def mmu_eval(model, world: World, decoder: str = "ar", batch_size: int = 64, max_new_tokens: int | None = None,
             block_size: int = 16, seed: int = 0, precision: str = "fp32", jacobi_stop: str = "block",
             limit: int | None = None) -> dict:
    """Exact-match answer accuracy on the held-out questions, per question type too, with forward
    passes per generated token (per row as if decoded alone, prefill included, so AR gives exactly
    1.0) and tokens per second. Forward passes run in `precision`; `jacobi_stop` is
    `jacobi_generate`'s `stop` ("block" or "eot"); `limit`: only the first that many questions."""
    import time

    import torch
    from .model import autocast
    from .sampling import ar_generate, jacobi_generate
    questions, images = world.eval_mmu()
    if limit is not None:
        questions, images = questions[:limit], images[:limit]
    prompts = mmu_prompts(world, questions, images, model.config)
    max_new = max_new_tokens or world.answer_tokens + 1
    g = torch.Generator().manual_seed(seed)
    answers, forwards, tokens, seconds = [], 0, 0, 0.0
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
        forwards += sum(row_forwards)
        tokens += sum(len(t) for t in r.tokens)
        answers += [world.text.decode([x for x in t if x != model.config.eot_id]) for t in r.tokens]
    correct = [a == q.answer for a, q in zip(answers, questions)]
    kinds = sorted({q.kind for q in questions})
    return {"accuracy": float(np.mean(correct)),
            **{f"accuracy_{k}": float(np.mean([c for c, q in zip(correct, questions) if q.kind == k])) for k in kinds},
            "forwards_per_token": forwards / max(tokens, 1), "tokens_per_second": tokens / max(seconds, 1e-9),
            "n_questions": len(questions), "examples": [{"question": q.question, "answer": q.answer, "got": a}
                                                        for q, a in list(zip(questions, answers))[:5]]}
