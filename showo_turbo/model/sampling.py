"""Samplers, all batched: MaskGIT text-to-image with CFG (Show-o's `t2i_generate`), autoregressive
decoding with a KV cache, and Jacobi decoding (greedy parallel refinement of n-token blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from transformers import DynamicCache

from .showo import (CaptionCache, ShowoModel, additive, cosine_schedule, image_slice, image_state_ids, mmu_allowed,
                    mmu_position_ids, omni_attention_mask, random_mask, t2i_sequences)

# --------------------------------------------------------------------------------------------
# Small helpers (MaskGIT / muse style).


def log(t: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    return torch.log(t.clamp(min=eps))


def gumbel_noise(shape, generator: torch.Generator | None = None) -> torch.Tensor:
    """-log(-log(u)), clamped inside both logs: a NaN here silently turns every sampler into 1 step."""
    u = torch.rand(shape, generator=generator)
    return -log(-log(u))


def tokens_to_remask(step: int, steps: int, num_tokens: int, unknown: torch.Tensor, min_remask: int = 1) -> torch.Tensor:
    """How many positions step `step` (0-based) leaves masked: floor(N cos((k+1)/T pi/2)), clamped to
    [min_remask, unknown - 1] (Show-o: min 1; its trajectory code: min 0), never above `unknown`."""
    n = math.floor(num_tokens * cosine_schedule((step + 1) / steps))
    n = torch.minimum(unknown - 1, torch.full_like(unknown, n))
    return torch.maximum(n, torch.full_like(unknown, min_remask)).clamp(max=unknown).clamp(min=0)


def noisy_initial_state(batch: int, num_tokens: int, codebook_size: int, mask_ratio: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, N] codes of a noise-input student's start (Di[M]O): round(N * mask_ratio) random positions
    masked (-1), every other position a uniformly random code. mask_ratio 1 is MaskGIT's all-[MASK]."""
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    masked = random_mask(torch.full((batch,), round(num_tokens * mask_ratio)), num_tokens, generator)
    codes = torch.randint(0, codebook_size, (batch, num_tokens), generator=generator)
    return torch.where(masked, -1, codes)


def arccos_schedule(u: torch.Tensor) -> torch.Tensor:
    """Masked fraction for u ~ U(0, 1): arccos(u) / (pi/2), Di[M]O's re-masking schedule (more
    weight on high mask ratios than a uniform one)."""
    return torch.arccos(u) / (math.pi / 2)


def remask(codes: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-mask each row of `codes` [B, N] at its own random ratio: round(N * arccos_schedule(u))
    positions (at least 1) become -1. Returns (state, masked)."""
    B, N = codes.shape
    n_mask = (N * arccos_schedule(torch.rand(B, generator=generator))).round().clamp(min=1)
    masked = random_mask(n_mask, N, generator)
    return torch.where(masked, -1, codes), masked


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    if not k or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


# --------------------------------------------------------------------------------------------
# MaskGIT text-to-image.


@dataclass
class T2ITrajectory:
    """states[k]: codes before step k (-1 = masked), states[T] = final. commit_step[b, i]: the step
    that fixed position i (a position still masked after the last step gets T-1, the step whose
    sample fills it). probs/indices[k]: top-k of the (CFG) distribution at every position at step k;
    meaningful where states[k] == -1."""

    states: torch.Tensor        # [T+1, B, N] int
    commit_step: torch.Tensor   # [B, N] int
    top_probs: torch.Tensor     # [T, B, N, k] float
    top_indices: torch.Tensor   # [T, B, N, k] int


@dataclass
class T2IResult:
    codes: torch.Tensor                      # [B, N] final codes
    trajectory: T2ITrajectory | None = None
    forwards: int = 0                        # model forward passes (a CFG pass counts once; its batch is doubled)


def guided_sequences(captions: torch.Tensor, caption_len: torch.Tensor, image_ids: torch.Tensor, cfg_scale: float,
                     cfg) -> torch.Tensor:
    """The sampler's T2I sequences: the conditional rows, then (with CFG) the unconditional
    (empty-caption) rows of the same doubled batch."""
    ids = t2i_sequences(captions, caption_len, image_ids, cfg)
    if cfg_scale != 0:
        empty = torch.zeros(len(ids), dtype=torch.long)
        ids = torch.cat([ids, t2i_sequences(captions[:, :0], empty, image_ids, cfg)])
    return ids


def caption_ids(captions: torch.Tensor, caption_len: torch.Tensor, cfg_scale: float, cfg) -> torch.Tensor:
    """The caption part (everything before <|soi|>) of `guided_sequences`: what a CaptionCache holds."""
    no_image = torch.zeros(len(captions), 0, dtype=torch.long)
    return guided_sequences(captions, caption_len, no_image, cfg_scale, cfg)[:, :image_slice(cfg).start - 1]


@torch.no_grad()
def guided_logits(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, image_ids: torch.Tensor,
                  cfg_scale: float, prompt_cache: CaptionCache | None = None,
                  latent: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N, codebook] logits at the image positions; with CFG, `(1+s) cond - s uncond`, the
    unconditional (empty-caption) rows computed in the same doubled batch. s = 0 is the plain
    conditional pass. `prompt_cache`: the captions' keys and values (`CaptionCache` of
    `caption_ids(...)`), so that only the image block runs. `latent` [B]: a mixture student's lambdas."""
    cfg = model.config
    ids = guided_sequences(captions, caption_len, image_ids, cfg_scale, cfg)
    ids = ids.to(model.device)
    if latent is not None and cfg_scale != 0:
        latent = latent.repeat(2)
    # The sampler's own bookkeeping stays on the CPU (seeded CPU generators); only the forward pass moves.
    if prompt_cache is not None:
        logits = prompt_cache.image_logits(ids, latent).float().cpu()
    else:
        logits = model.image_logits(ids, omni_attention_mask(ids, cfg), latent).float().cpu()
    if cfg_scale == 0:
        return logits
    cond, uncond = logits.chunk(2)
    return (1 + cfg_scale) * cond - cfg_scale * uncond


class MaskGITStep(NamedTuple):
    sampled: torch.Tensor    # [B, N] a code at every position (known codes kept)
    codes: torch.Tensor      # [B, N] the next state: the least confident new codes re-masked (-1)
    committed: torch.Tensor  # [B, N] positions fixed by this step


def maskgit_step(probs: torch.Tensor, codes: torch.Tensor, step: int, steps: int, temperature: float,
                 generator: torch.Generator | None = None, sample: str = "multinomial",
                 min_remask: int = 1) -> MaskGITStep:
    """Steps 2-4 of one MaskGIT step (Show-o's `t2i_generate`), from this step's distributions
    `probs` [B, N, C] at the state `codes` (-1 = masked):

    2. sample a code per position (multinomial or argmax); known codes stay;
    3. confidence = log p(sampled) + `temperature` * Gumbel noise (the caller anneals it); known
       codes are never re-masked;
    4. re-mask the least confident new codes, as many as `tokens_to_remask` says.
    """
    B, N = codes.shape
    if sample == "argmax":
        sampled = probs.argmax(-1)
    else:
        sampled = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=generator).view(B, N)
    unknown = codes < 0
    sampled = torch.where(unknown, sampled, codes)
    confidence = log(probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1))
    if temperature > 0:
        confidence = confidence + temperature * gumbel_noise(confidence.shape, generator)
    confidence = torch.where(unknown, confidence, torch.finfo(confidence.dtype).max)
    n_mask = tokens_to_remask(step, steps, N, unknown.sum(-1), min_remask)
    remasked = confidence.argsort(-1).argsort(-1) < n_mask.unsqueeze(-1)
    return MaskGITStep(sampled, torch.where(remasked, -1, sampled), unknown & ~remasked)


def annealed_temperature(temperature: float, step: int, steps: int) -> float:
    """Show-o's Gumbel temperature at step `step` (0-based) of `steps`: multiplied by (1 - (k+1)/T)
    at every step k up to this one, compounded."""
    for k in range(step + 1):
        temperature = temperature * (1 - (k + 1) / steps)
    return temperature


@torch.no_grad()
def t2i_generate(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, steps: int = 16,
                 cfg_scale: float = 0.0, temperature: float = 1.0, sample: str = "multinomial", top_k: int | None = None,
                 min_remask: int = 1, generator: torch.Generator | None = None,
                 return_trajectory: bool = False, trajectory_top_k: int = 16, init_mask_ratio: float | None = None,
                 prompt_cache: bool = True) -> T2IResult:
    """MaskGIT sampling as in Show-o's `t2i_generate`.

    Each step k of T: (1) logits at image positions over codes only, CFG `(1+s) cond - s uncond` in
    one doubled batch, optional top-k; (2-4) `maskgit_step` with the temperature annealed by
    (1 - (k+1)/T), compounded every step. Returns the last samples (so a position re-masked at the
    final step is still filled, as in Show-o).

    `init_mask_ratio` starts from a noise-input student's state instead of all-[MASK]
    (`noisy_initial_state`: that fraction masked, random codes elsewhere): the first pass predicts
    every position, random ones included, and from there on the steps are the usual ones. The
    trajectory's states[0] is that noisy state.

    `prompt_cache` (default): the captions' keys and values are computed once (`CaptionCache`) and
    every step runs only the image block; False recomputes the whole sequence at every step.

    A model with a mixture latent (methods/mixture.py) gets a fresh lambda ~ U(0, 1) per image at
    every step, drawn from `generator`: each step samples from the student's mixture at its state,
    as Di4C's sampler does.
    """
    if sample not in ("multinomial", "argmax"):
        raise ValueError(f"sample must be 'multinomial' or 'argmax', got {sample!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cfg = model.config
    N, B = cfg.num_image_tokens, captions.shape[0]
    codes = torch.full((B, N), -1, dtype=torch.long)  # -1 = masked
    start = codes if init_mask_ratio is None else noisy_initial_state(B, N, cfg.codebook_size, init_mask_ratio, generator)
    states, probs_k, idx_k = [start.clone()], [], []
    commit = torch.full((B, N), steps - 1, dtype=torch.long)
    forwards = 0
    cache = CaptionCache(model, caption_ids(captions, caption_len, cfg_scale, cfg)) if prompt_cache else None
    for k in range(steps):
        # 1. Logits over codes at image positions (conditional and unconditional in one batch).
        state = start if k == 0 and init_mask_ratio is not None else codes  # the noisy start: every position to predict
        latent = torch.rand(B, generator=generator) if cfg.mixture_latent else None
        logits = guided_logits(model, captions, caption_len, image_state_ids(state, cfg), cfg_scale, cache, latent)
        logits = top_k_filter(logits, top_k)
        forwards += 1
        probs = logits.softmax(-1)
        if return_trajectory:
            p, i = probs.topk(min(trajectory_top_k, probs.shape[-1]), dim=-1)
            probs_k.append(p.half())
            idx_k.append(i.to(torch.int16 if cfg.codebook_size < 32768 else torch.int32))
        # 2-4. Sample, score with annealed Gumbel noise, re-mask the least confident.
        step = maskgit_step(probs, codes, k, steps, annealed_temperature(temperature, k, steps), generator, sample,
                            min_remask)
        commit = torch.where(step.committed, torch.full_like(commit, k), commit)
        codes = step.codes
        states.append(codes.clone())
    traj = None
    if return_trajectory:
        with torch.autocast("cpu", enabled=False):  # CPU bf16 autocast refuses to stack float16 tensors
            traj = T2ITrajectory(torch.stack(states), commit, torch.stack(probs_k), torch.stack(idx_k))
    return T2IResult(step.sampled, traj, forwards)


# --------------------------------------------------------------------------------------------
# Text: AR with a KV cache, and Jacobi decoding.


def left_pad(prompts: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    L = max(len(p) for p in prompts)
    out = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        out[i, L - len(p):] = p
    return out


@dataclass
class TextResult:
    tokens: list[list[int]]            # generated tokens per row, up to and including <|eot|> when reached
    forwards: int                      # forward passes of the batch (prefill counted once)
    stats: dict = field(default_factory=dict)
    trajectories: list = field(default_factory=list)


class _Decoder:
    """Shared KV-cache bookkeeping for a left-padded batch of MMU prompts. The bookkeeping stays on
    the CPU; inputs move to the model's device and logits come back."""

    def __init__(self, model: ShowoModel, prompt: torch.Tensor, block: torch.Tensor | None = None):
        """The prefill. With `block` [B, n] it also runs `extend(block)` in the same forward pass:
        `block_logits` then holds that pass's logits, the block's keys and values are in the cache."""
        self.model, self.cfg = model, model.config
        self.valid = prompt != self.cfg.layout.pad_id  # [B, P] keys that may be attended
        positions = mmu_position_ids(prompt, self.cfg)
        self.next_pos = positions[:, -1] + 1
        self.cache = DynamicCache(config=model.showo.config)
        allowed, P = mmu_allowed(prompt, self.cfg), prompt.shape[1]
        ids = prompt
        if block is not None:
            B, n = block.shape
            allowed = torch.cat([torch.cat([allowed, torch.zeros(B, P, n, dtype=torch.bool)], 2),
                                 self._block_rows(n)], 1)
            positions = torch.cat([positions, self._next_positions(n)], 1)
            ids = torch.cat([prompt, block], 1)
        logits = self._logits(ids, additive(allowed), positions)
        self.last_logits, self.block_logits = logits[:, P - 1], (logits[:, P:] if block is not None else None)

    def _next_positions(self, n: int) -> torch.Tensor:
        """[B, n] the positions of n tokens after the accepted prefix."""
        return self.next_pos.view(-1, 1) + torch.arange(n).view(1, n)

    def _block_rows(self, n: int) -> torch.Tensor:
        """[B, n, past + n] the attention of n new tokens: every valid cached key, causal among themselves."""
        B = self.valid.shape[0]
        keys = torch.cat([self.valid, torch.ones(B, n, dtype=torch.bool)], 1)
        allowed = keys.unsqueeze(1).expand(B, n, keys.shape[1]).clone()
        allowed[:, :, -n:] &= torch.ones(n, n, dtype=torch.bool).tril()
        return allowed

    def _logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One cached forward pass on the model's device; logits back on the CPU."""
        dev = self.model.device
        h = self.model.showo.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                                   cache=self.cache, use_cache=True).last_hidden_state
        return self.model.logits(h).float().cpu()

    def extend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed `tokens` [B, n] (causal among themselves, seeing every valid cached key); returns logits [B, n, V]."""
        n = tokens.shape[1]
        return self._logits(tokens, additive(self._block_rows(n)), self._next_positions(n))

    def accept(self, n: int) -> None:
        self.valid = torch.cat([self.valid, torch.ones(self.valid.shape[0], n, dtype=torch.bool)], 1)
        self.next_pos = self.next_pos + n

    def rollback(self, n: int) -> None:
        if n:  # crop(-0) would empty the cache
            self.cache.crop(-n)


def _done(rows: list[list[int]], eot: int, max_new: int) -> list[bool]:
    return [eot in r or len(r) >= max_new for r in rows]


def _trim(rows: list[list[int]], eot: int, max_new: int) -> list[list[int]]:
    return [r[: r.index(eot) + 1] if eot in r else r[:max_new] for r in rows]


@torch.no_grad()
def ar_generate(model: ShowoModel, prompt: torch.Tensor, max_new_tokens: int = 32) -> TextResult:
    """Greedy autoregressive decoding with a KV cache; `prompt` [B, P] left-padded MMU prompts."""
    eot = model.config.eot_id
    dec = _Decoder(model, prompt)
    rows: list[list[int]] = [[] for _ in range(prompt.shape[0])]
    logits, forwards = dec.last_logits, 1
    while not all(_done(rows, eot, max_new_tokens)):
        nxt = logits.argmax(-1)
        for r, t in zip(rows, nxt.tolist()):
            r.append(t)
        if all(_done(rows, eot, max_new_tokens)):
            break
        logits = dec.extend(nxt.view(-1, 1))[:, -1]
        dec.accept(1)
        forwards += 1
    out = _trim(rows, eot, max_new_tokens)
    return TextResult(out, forwards, {"tokens": sum(map(len, out))})


def initial_guess(prompt: torch.Tensor, n: int, strategy: str, pad_id: int, vocab: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """First guess for a Jacobi block: random tokens drawn from each prompt's own (non-pad) tokens
    (Show-o Turbo's choice), random vocabulary tokens, or PADs."""
    B = prompt.shape[0]
    if strategy == "prompt":
        out = torch.empty(B, n, dtype=torch.long)
        for b in range(B):
            toks = prompt[b][prompt[b] != pad_id]
            out[b] = toks[torch.randint(0, len(toks), (n,), generator=generator)]
        return out
    if strategy == "random":
        return torch.randint(0, vocab, (B, n), generator=generator)
    if strategy == "pad":
        return torch.full((B, n), pad_id, dtype=torch.long)
    raise ValueError(f"unknown initial guess {strategy!r}; allowed: prompt, random, pad")


@torch.no_grad()
def jacobi_generate(model: ShowoModel, prompt: torch.Tensor, max_new_tokens: int = 32, block_size: int = 16,
                    init: str = "prompt", generator: torch.Generator | None = None,
                    return_trajectories: bool = False, stop: str = "block") -> TextResult:
    """Greedy Jacobi decoding: for each block of n tokens, start from a guess and re-predict all n in
    parallel from the accepted prefix (held in the KV cache) until nothing changes. The fixed point
    equals greedy AR output. Stops at <|eot|> or `max_new_tokens`.

    `stop` says when a block is done: "block" (all n positions unchanged, the junk after <|eot|>
    included, as Show-o Turbo's code iterates) or "eot" (a row is done once its <|eot|> is known to
    be final: a prefix unchanged between two passes is final, and so is the token predicted right
    after it, so the output is still greedy AR's; a block never reaches past max_new_tokens, and rows
    finished in earlier blocks no longer hold the batch back).

    The prefill and the first block's first pass are one forward pass (the guess follows the prompt),
    and a prefix that a pass left unchanged stays in the cache, so a pass feeds only the rest.

    Statistics, per row as if decoded alone (`row_forwards`, the prefill's pass included) and for the
    batch (`forwards`); `iterations[block][row]` (the pass that confirms the fixed point included);
    `fast_forwarded` (tokens beyond the first that joined the correct prefix in the same iteration)
    and `stationary` (tokens that became final while a token before them was still wrong).
    """
    cfg = model.config
    eot, pad = cfg.eot_id, cfg.layout.pad_id
    B, n = prompt.shape[0], block_size
    dec = None
    rows: list[list[int]] = [[] for _ in range(B)]
    forwards, iterations, fast_forwarded, stationary = 0, [], 0, 0
    row_forwards = [0] * B
    trajectories = []
    limit = n + 1  # a block's fixed point is reached within n passes, confirmed by one more
    if stop not in ("block", "eot"):
        raise ValueError(f"stop must be 'block' or 'eot', got {stop!r}")
    while not all(done := _done(rows, eot, max_new_tokens)):
        active = torch.tensor([not d for d in done])
        # stop="eot" never decodes past max_new_tokens (later tokens cannot change earlier ones); the
        # guess is drawn at full width either way, so the generator advances as for stop="block".
        width = n if stop == "block" else min(n, max_new_tokens - min(len(r) for r, d in zip(rows, done) if not d))
        guess = initial_guess(prompt, n, init, pad, cfg.vocab_size, generator)[:, :width]
        if dec is None:  # the prefill runs the first block's first pass in the same forward
            dec, forwards = _Decoder(model, prompt, guess), 1
        first = dec.last_logits.argmax(-1)  # the token after the accepted prefix is already known
        states, kept = [guess.clone()], 0   # kept: leading tokens already final, held in the cache
        ended_at = torch.zeros(B, dtype=torch.long)  # stop="eot": the pass that fixed each row's answer
        for k in range(1, limit + 1):
            if dec.block_logits is not None:
                logits, dec.block_logits = dec.block_logits, None
            else:
                logits = dec.extend(guess[:, kept:])
                forwards += 1
            new = torch.cat([guess[:, :kept], first.view(B, 1), logits[:, :-1].argmax(-1)], 1)
            states.append(new.clone())
            settled = ~active
            if stop == "eot":
                settled = settled | _answer_known(new, guess, eot)
                ended_at = torch.where((ended_at == 0) & settled, k, ended_at)
            # A prefix a pass left unchanged is final (each of its tokens was predicted from the same
            # tokens before it): its keys and values stay in the cache and the next pass skips it.
            same = (new[:, kept:] == guess[:, kept:]) | settled.view(B, 1)
            stable = int(same.long().cumprod(-1).sum(-1).min())
            if kept + stable == width:  # every row unchanged or settled: the block is done
                break
            dec.rollback(width - kept - stable)
            dec.accept(stable)
            kept += stable
            first, guess = new[:, kept], new
        else:  # not converged within `limit`: the last guess is exact up to `limit` tokens; recompute its cache
            logits = dec.extend(guess[:, kept:])
            forwards += 1
        dec.accept(width - kept)
        dec.last_logits = logits[:, -1]
        traj = torch.stack(states)  # [iterations + 1, B, n]
        final = traj[-1]
        its, ff, st = _block_stats(traj, _up_to_eot(final, eot) if stop == "eot" else None)
        if stop == "eot":
            its = torch.where(ended_at > 0, ended_at, len(states) - 1)
        iterations.append([int(x) if a else 0 for x, a in zip(its, active)])
        row_forwards = [f + i for f, i in zip(row_forwards, iterations[-1])]
        fast_forwarded += int(ff[active].sum())
        stationary += int(st[active].sum())
        if return_trajectories:
            trajectories.append(traj)
        for r, toks, a in zip(rows, final.tolist(), active.tolist()):
            if a:
                r.extend(toks)
    out = _trim(rows, eot, max_new_tokens)
    stats = {"tokens": sum(map(len, out)), "blocks": len(iterations), "iterations": iterations,
             "row_forwards": row_forwards, "fast_forwarded": fast_forwarded, "stationary": stationary}
    return TextResult(out, forwards, stats, trajectories)


def _up_to_eot(block: torch.Tensor, eot: int) -> torch.Tensor:
    """[B, n] True at the positions up to and including each row's first <|eot|> (all if none)."""
    seen = (block == eot).long().cumsum(-1)
    return (seen == 0) | ((seen == 1) & (block == eot))


def _answer_known(new: torch.Tensor, guess: torch.Tensor, eot: int) -> torch.Tensor:
    """[B] rows whose block a pass (`guess` -> `new`) made final for stop="eot". The leading tokens the
    pass left unchanged are final, and so is the next one (predicted from them): the row is done when
    those hold an <|eot|>, or when the whole block is unchanged."""
    common = (new == guess).long().cumprod(-1).sum(-1)
    known = torch.arange(new.shape[1]).view(1, -1) <= common.view(-1, 1)
    return ((new == eot) & known).any(-1) | (common == new.shape[1])


def _block_stats(traj: torch.Tensor, relevant: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of one block's Jacobi states `traj` [S, B, n] (S-1 passes, last state = fixed point):
    passes a row needed alone (first state equal to the fixed point, plus the confirming pass),
    fast-forwarded and stationary token counts. `relevant` [B, n] limits the comparison to some
    positions (those up to <|eot|> for stop="eot"); the others count as always correct."""
    final = traj[-1]
    correct = traj == final                                   # [S, B, n]
    if relevant is not None:
        correct = correct | ~relevant
    same = correct.all(-1)                                    # [S, B]
    first_final = same.long().argmax(0)                       # first state that is the fixed point
    iterations = first_final + 1
    prefix = correct.long().cumprod(-1).sum(-1)               # length of the correct prefix per state
    gained = (prefix[1:] - prefix[:-1]).clamp(min=0)          # tokens joining the prefix per pass
    S = traj.shape[0]
    alive = torch.arange(1, S).view(-1, 1) <= first_final.view(1, -1)
    fast = ((gained - 1).clamp(min=0) * alive).sum(0)
    # Token i is stationary if, from the state where it last changed on, it was final before the prefix reached it.
    changed = torch.cat([torch.ones_like(correct[:1]), traj[1:] != traj[:-1]])  # [S, B, n]
    last_change = (changed.long() * torch.arange(S).view(-1, 1, 1)).amax(0)      # [B, n]
    prefix_then = prefix.T.gather(1, last_change)                                # [B, n]
    late = torch.arange(traj.shape[2]).view(1, -1) >= prefix_then
    stationary = (late if relevant is None else late & relevant).sum(-1)
    return iterations, fast, stationary
