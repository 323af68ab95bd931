"""Teacher trajectories for consistency distillation (docs/method.md, section 4).

T2I: the teacher samples each training caption with CFG over T MaskGIT steps, deterministically
(argmax, no Gumbel noise, as in the paper) or stochastically (several seeded samples per caption).
Per trajectory the store keeps the final codes, the step at which each position was committed
(every state follows: position i is masked before step k iff commit_step[i] >= k) and the
teacher's top-k CFG distribution at every step and position (meaningful where still masked), so
that any segmentation of the curriculum can pick its targets without decoding again.

MMU: greedy Jacobi decoding of training questions; per question the left-padded prompt, the states
of every block from the initial guess to the fixed point (padded) and the number of states per
block; the fixed points, concatenated, are the teacher's greedy answer.

Both are written as checksummed shards (`shards.py`); a rerun resumes after the last complete
shard, and every batch draws from its own seeded generator, so a resumed store equals an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..model.showo import ShowoModel, autocast, mmu_prefix
from ..pipeline.io import exclusive_folder
from ..pipeline.params import TrajectoryParams, to_dict
from ..model.sampling import T2IResult, jacobi_generate, left_pad, t2i_generate
from ..pipeline.shards import ShardReader, ShardWriter, read_manifest


def segment_bounds(steps: int, segments: int) -> list[tuple[int, int]]:
    """Split steps 0..T-1 into `segments` contiguous, near-equal [start, end] ranges (inclusive)."""
    if not 1 <= segments <= steps:
        raise ValueError(f"segments must be in [1, {steps}], got {segments}")
    edges = [round(i * steps / segments) for i in range(segments + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(segments)]


def segment_ends(steps: int, curriculum: list[int]) -> list[int]:
    """Every segment end of every stage of the curriculum (sorted, unique)."""
    return sorted({e for s in curriculum for _, e in segment_bounds(steps, s)})


def masked_before(commit_step: torch.Tensor, step: int) -> torch.Tensor:
    """Positions still masked when step `step` starts (the state x_step)."""
    return commit_step >= step


def state_at(codes: torch.Tensor, commit_step: torch.Tensor, step: int) -> torch.Tensor:
    """The trajectory's state before step `step` (-1 = masked), rebuilt from final codes + commit steps."""
    return torch.where(masked_before(commit_step, step), -1, codes)


# --------------------------------------------------------------------------------------------
# T2I.


def t2i_rows(result: T2IResult) -> dict[str, torch.Tensor]:
    """What the store keeps of one batch of MaskGIT trajectories."""
    tr = result.trajectory
    return {"codes": result.codes.to(torch.int16), "commit_step": tr.commit_step.to(torch.int16),
            "probs": tr.top_probs.permute(1, 0, 2, 3).contiguous(),      # [B, T, N, k] float16
            "index": tr.top_indices.permute(1, 0, 2, 3).contiguous()}    # [B, T, N, k] int16


@torch.no_grad()
def collect_t2i_batch(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, steps: int, cfg_scale: float,
                      deterministic: bool = True, temperature: float = 1.0, top_k: int = 16,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One batch of teacher trajectories. min_remask=0 as in Show-o Turbo's trajectory code, so every
    position is committed inside the T steps. Deterministic decoding takes the argmax codes and commits
    them in confidence order (the paper); stochastic decoding samples at `temperature`."""
    kw = (dict(sample="argmax", temperature=0.0) if deterministic
          else dict(sample="multinomial", temperature=temperature))
    res = t2i_generate(model, captions, caption_len, steps=steps, cfg_scale=cfg_scale, min_remask=0,
                       return_trajectory=True, trajectory_top_k=top_k, generator=generator, **kw)
    return t2i_rows(res)


def training_captions(world, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` distinct training captions (right-padded ids, lengths), a seeded choice."""
    t = world.t2i_train()
    pid = t["prompt_id"].long()
    first = {}
    for row, p in enumerate(pid.tolist()):
        first.setdefault(p, row)
    rows = torch.tensor(sorted(first.values()))
    if n > len(rows):
        raise ValueError(f"trajectories.captions: {n} asked for, the world has {len(rows)} distinct training captions")
    pick = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n]]
    return t["caption"][pick].long(), t["caption_len"][pick].long()


def model_sha256(model: ShowoModel) -> str:
    """Identifies the teacher in a store's manifest (a store from another teacher is not resumed)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def store_params(model: ShowoModel, tp: TrajectoryParams) -> dict:
    """What a trajectory store records as its origin (a rerun resumes a store only when they match)."""
    return {"trajectories": to_dict(tp), "teacher_sha256": model_sha256(model)}


def _batch_generator(seed: int, kind: int, row: int) -> torch.Generator:
    # One generator per batch, keyed by its first row: a resumed run draws exactly what the first run would have.
    return torch.Generator().manual_seed(seed * 1_000_003 + kind * 100_003 + row)


def _write_store(writer: ShardWriter, total: int, tp: TrajectoryParams, batch_rows, desc: str, progress: bool,
                 device: torch.device) -> None:
    """Fill `writer` up to `total` rows, `tp.shard_rows` per shard, from `batch_rows(begin, end)`
    (a batch never crosses a shard; its forward passes in `tp.precision`), continuing after the
    shards it already holds."""
    bar = tqdm(total=total, initial=writer.rows, desc=desc, disable=not progress)
    for start in range(writer.rows, total, tp.shard_rows):
        stop = min(start + tp.shard_rows, total)
        parts = []
        for b in range(start, stop, tp.batch_size):
            e = min(b + tp.batch_size, stop)
            with autocast(tp.precision, device):
                parts.append(batch_rows(b, e))
            bar.update(e - b)
        writer.append({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    bar.close()


def collect_t2i(model: ShowoModel, world, tp: TrajectoryParams, out_dir: str | Path, progress: bool = True,
                restart: bool = False) -> ShardReader:
    """T2I trajectories of `tp.captions` training captions x `tp.samples_per_caption`, into shards.
    Resumes a store written with the same params and teacher; `restart` starts over one written otherwise."""
    caps, lens = training_captions(world, tp.captions, tp.seed)
    caps, lens = caps.repeat_interleave(tp.samples_per_caption, 0), lens.repeat_interleave(tp.samples_per_caption, 0)

    def batch_rows(b: int, e: int) -> dict[str, torch.Tensor]:
        rows = collect_t2i_batch(model, caps[b:e], lens[b:e], tp.steps, tp.cfg_scale, tp.decoding == "deterministic",
                                 tp.temperature, tp.top_k, _batch_generator(tp.seed, 1, b))
        return {"caption": caps[b:e].to(torch.int32), "caption_len": lens[b:e].to(torch.int32), **rows}

    with exclusive_folder(out_dir):
        writer = ShardWriter(out_dir, "t2i", store_params(model, tp), restart)
        _write_store(writer, len(caps), tp, batch_rows, "T2I trajectories", progress, model.device)
        writer.finish(trajectories=len(caps), captions=tp.captions)
    return ShardReader(out_dir, "t2i")


# --------------------------------------------------------------------------------------------
# MMU.


def mmu_training_prompts(world, cfg, idx: torch.Tensor, length: int) -> torch.Tensor:
    """Left-padded `[mmu][soi] image [eoi][sot] question` prompts of training examples `idx`, all `length` long."""
    m = world.mmu_train()
    prefix = mmu_prefix(m["codes"][idx].view(len(idx), -1).long() + world.layout.code_offset, cfg)
    rows = [torch.cat([prefix[i], m["question"][j, :int(m["question_len"][j])].long()]) for i, j in enumerate(idx.tolist())]
    out = left_pad(rows, world.layout.pad_id)
    return torch.cat([torch.full((len(idx), length - out.shape[1]), world.layout.pad_id, dtype=torch.long), out], 1)


def has_repetition(tokens: list[int], run: int = 10) -> bool:
    """A token repeated `run` times in a row (such trajectories are dropped, as in Show-o Turbo)."""
    count = 0
    for i, t in enumerate(tokens):
        count = count + 1 if i and t == tokens[i - 1] else 1
        if count >= run:
            return True
    return False


@torch.no_grad()
def collect_mmu_batch(model: ShowoModel, prompt: torch.Tensor, max_new_tokens: int, block_size: int, init: str,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Jacobi trajectories of one batch: states [B, blocks, n + 2, n] (each block's states from the
    guess to the fixed point, then padded by repeating the fixed point), n_states [B, blocks] (0 for a
    block the row did not need), answer [B, blocks * n] (the fixed points up to <|eot|>, then PAD) and
    answer_len [B]."""
    cfg = model.config
    n, B = block_size, prompt.shape[0]
    blocks = math.ceil(max_new_tokens / n)
    res = jacobi_generate(model, prompt, max_new_tokens=max_new_tokens, block_size=n, init=init, generator=generator,
                          return_trajectories=True)
    states = torch.full((B, blocks, n + 2, n), cfg.layout.pad_id, dtype=torch.long)
    n_states = torch.zeros(B, blocks, dtype=torch.long)
    for j, (traj, its) in enumerate(zip(res.trajectories, res.stats["iterations"])):
        for b in range(B):
            s = int(its[b])  # states up to and including the row's own fixed point
            if s:
                states[b, j, :s] = traj[:s, b]
                states[b, j, s:] = traj[s - 1, b]
                n_states[b, j] = s
    answer = torch.full((B, blocks * n), cfg.layout.pad_id, dtype=torch.long)
    for b, toks in enumerate(res.tokens):
        answer[b, :len(toks)] = torch.tensor(toks)
    answer_len = torch.tensor([len(t) for t in res.tokens])
    return {"states": states.to(torch.int32), "n_states": n_states.to(torch.int16), "answer": answer.to(torch.int32),
            "answer_len": answer_len.to(torch.int16)}


def collect_mmu(model: ShowoModel, world, tp: TrajectoryParams, out_dir: str | Path, progress: bool = True,
                restart: bool = False) -> ShardReader:
    """Jacobi trajectories of `tp.mmu_questions` training questions, into shards (resumable). Rows whose
    answer repeats a token 10 times are flagged `repetitive` (distillation drops them)."""
    m = world.mmu_train()
    if tp.mmu_questions > len(m["question"]):
        raise ValueError(f"trajectories.mmu_questions: {tp.mmu_questions} asked for, the world has {len(m['question'])}")
    idx = torch.randperm(len(m["question"]), generator=torch.Generator().manual_seed(tp.seed))[:tp.mmu_questions]
    length = 4 + model.config.num_image_tokens + m["question"].shape[1]
    max_new = world.answer_tokens + 1  # the answer and its <|eot|>

    def batch_rows(b: int, e: int) -> dict[str, torch.Tensor]:
        prompt = mmu_training_prompts(world, model.config, idx[b:e], length)
        rows = collect_mmu_batch(model, prompt, max_new, tp.block_size, tp.init, _batch_generator(tp.seed, 2, b))
        # Kept but flagged (rows stay aligned with the questions, so resuming stays exact).
        repetitive = torch.tensor([has_repetition(a[:n].tolist()) for a, n in zip(rows["answer"], rows["answer_len"])])
        return {"prompt": prompt.to(torch.int32), "example": idx[b:e].to(torch.int32), **rows, "repetitive": repetitive}

    with exclusive_folder(out_dir):
        writer = ShardWriter(out_dir, "mmu", store_params(model, tp), restart)
        _write_store(writer, len(idx), tp, batch_rows, "MMU trajectories", progress, model.device)
        reader = ShardReader(out_dir, "mmu", require_complete=False)
        writer.finish(questions=len(idx), repetitive=sum(int(s["repetitive"].sum()) for s in reader))
    return ShardReader(out_dir, "mmu")


# --------------------------------------------------------------------------------------------
# Reading a store back: pictures and summaries for the report.


def load_store(root: str | Path, kind: str) -> dict[str, torch.Tensor]:
    """Every shard of a complete store, validated and concatenated."""
    parts = list(ShardReader(root, kind))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}


def decode_states(world, codes: torch.Tensor, commit_step: torch.Tensor, steps: int, mask_rgb=(96, 96, 96),
                  start: torch.Tensor | None = None):
    """[T+1, H, W, 3] uint8: the image before each step and the final one, masked patches in grey.
    `start` [N] (-1 = masked) replaces the state before the first step (a noise-input student's start)."""
    import numpy as np
    gh, gw = world.vq.grid_shape
    states = torch.stack([state_at(codes.long(), commit_step.long(), k) for k in range(steps + 1)])
    if start is not None:
        states[0] = start.long()
    states = states.view(-1, gh, gw)
    images = world.vq.decode(states.clamp(min=0).numpy())
    ph, pw = images.shape[1] // gh, images.shape[2] // gw  # pixels per code
    masked = np.kron((states < 0).numpy(), np.ones((ph, pw), bool))
    images[masked] = mask_rgb
    return images


def store_summary(root: str | Path) -> dict:
    m = read_manifest(root)
    return {"rows": m["counts"]["rows"], "shards": m["counts"]["shards"], "complete": bool(m["counts"].get("complete")),
            "megabytes": round(sum(s["bytes"] for s in m["shards"]) / 2**20, 1)}


def jacobi_summary(data: dict[str, torch.Tensor]) -> dict:
    """The teacher's Jacobi statistics over a MMU store: passes per block (the confirming pass
    included) and forward passes per generated token (prefill included, as `mmu_eval` counts)."""
    n_states = data["n_states"].long()
    tokens = int(data["answer_len"].long().sum())
    used = n_states > 0
    return {"questions": len(n_states), "repetitive": int(data["repetitive"].sum()), "tokens": tokens,
            "blocks": int(used.sum()), "iterations_per_block": float(n_states[used].float().mean()),
            "forwards_per_token": float((len(n_states) + n_states.sum()) / max(tokens, 1))}
