"""Matched teacher samples: a noise-input student trained by cross-entropy on teacher samples that
are paired with its noisy starts by an assignment (`distill.dm.image_loss: matched`).

Why: a one-pass student from an all-[MASK] state trained by cross-entropy on teacher samples learns
their per-position marginals, which hedge across layouts (studies/2026-11-27-distill-budget). With a
noisy start the student has a latent, but a random pairing of starts and samples gives it nothing to
read from that latent: every start is asked for every layout. Here the pairing is chosen by the
student itself. For each caption, K noisy starts and K teacher samples of that caption; the student's
log-likelihood of every sample from every start gives a K x K matrix, and the assignment that
maximises its sum pairs them (a minibatch coupling, as optimal-transport couplings in flow matching,
Tong et al. 2023 / Pooladian et al. 2023, or ReDi's re-pairing of source and target, Yoo et al.
2025; the cost here is the student's own likelihood, so whatever the start already says about the
layout is reinforced). Each start is then trained towards one coherent sample. One update:

1. K noisy starts per caption (`sampling.noisy_initial_state`), one student pass with gradient;
2. the K x K log-likelihoods of the caption's K pool samples from those logits (no gradient) and
   the assignment that maximises their sum (`assign_samples`); with `pairing: teacher` the frozen
   teacher's one pass from the same starts gives the likelihoods instead (at the masked positions
   only): a fixed coupling, which the student's own can drift away from;
3. cross-entropy of the pass at every position towards its assigned sample (the first pass);
4. the later passes: each assigned sample re-masked at a random ratio (Di[M]O's arccos schedule),
   a second student pass, cross-entropy at the masked positions (MaskGIT's loss on teacher samples),
   weight `remask_weight`;
5. text: the consistency stages' Jacobi consistency + AR + LM losses, as the dm objective.

The pool (`teacher_pool`): `pool_samples` samples of each of the first `pool_captions` training
captions from the teacher with CFG, drawn once by the teacher_cfg arm's sampler (multinomial,
Gumbel re-masking) and kept in the stage's folder; its build checkpoints after every batch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .consistency import text_losses, total_loss
from .errors import ShowoError
from .io import read_safetensors, write_safetensors
from .model import ShowoModel, autocast, image_state_ids, lm_loss, t2i_sequences
from .params import DistillParams
from .sampling import remask, t2i_generate

POOL_FORMAT = "showo-turbo/teacher-pool"
POOL_VERSION = 1


class PoolError(ShowoError, ValueError):
    """A teacher-sample pool file is unreadable, foreign or of other settings."""


# --------------------------------------------------------------------------------------------
# The pairing.


def pair_log_likelihood(logits: torch.Tensor, samples: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
    """[K, K] matrix L[i, j] = sum_n log softmax(logits[i, n])[samples[j, n]]: how likely start i's
    pass makes sample j. logits [K, N, C], samples [K, N] (codes); `where` [K, N] (bool) keeps only
    those positions of each start in the sum (e.g. its masked ones)."""
    logp = logits.detach().float().log_softmax(-1).permute(1, 0, 2)     # [N, K_start, C]
    K = samples.shape[0]
    index = samples.t().unsqueeze(1).expand(-1, logp.shape[1], K)     # [N, K_start, K_sample]
    ll = logp.gather(-1, index.to(logp.device))
    if where is not None:
        ll = ll * where.t().unsqueeze(-1).to(ll.device)
    return ll.sum(0)


def assign_samples(logits: torch.Tensor, samples: torch.Tensor,
                   where: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair each start with one sample of its caption. logits [G*K, N, C] (K starts per caption, in
    groups), samples [G, K, N], `where` as pair_log_likelihood's ([G*K, N]). Returns (targets
    [G*K, N], gain): targets[g*K + i] is the sample the assignment gives start i of caption g
    (maximum total log-likelihood), gain the mean per position of the assigned log-likelihood over a
    random pairing's (0 when the starts say nothing)."""
    from scipy.optimize import linear_sum_assignment

    G, K, N = samples.shape
    targets, gain = torch.empty(G * K, N, dtype=torch.long), 0.0
    for g in range(G):
        part = None if where is None else where[g * K:(g + 1) * K]
        L = pair_log_likelihood(logits[g * K:(g + 1) * K], samples[g].long(), part).cpu()
        rows, cols = linear_sum_assignment(L.numpy(), maximize=True)
        targets[g * K + torch.as_tensor(rows)] = samples[g, torch.as_tensor(cols)].long()
        gain += float(L[rows, cols].mean() - L.mean()) / N
    return targets, torch.tensor(gain / G)


# --------------------------------------------------------------------------------------------
# The teacher's sample pool.


def pool_key(teacher_sha256: str, captions: torch.Tensor, caption_len: torch.Tensor, samples: int, steps: int,
             cfg_scale: float, temperature: float, seed: int, batch_size: int, precision: str) -> str:
    """Everything the pool's codes depend on, hashed."""
    h = hashlib.sha256()
    h.update(teacher_sha256.encode())
    h.update(captions.to(torch.int64).numpy().tobytes())
    h.update(caption_len.to(torch.int64).numpy().tobytes())
    h.update(repr((samples, steps, float(cfg_scale), float(temperature), seed, batch_size, precision)).encode())
    return h.hexdigest()


def _read_pool(path: Path, key: str) -> torch.Tensor | None:
    """The codes [rows_done, N] of a pool file with this key; None when there is none yet."""
    if not path.is_file():
        return None
    tensors, meta = read_safetensors(path, PoolError)
    if meta.get("format") != POOL_FORMAT or meta.get("version") != str(POOL_VERSION) or "codes" not in tensors:
        raise PoolError(f"{path}: not a showo-turbo teacher-sample pool (version {POOL_VERSION}); delete it to rebuild")
    if meta.get("key") != key:
        return None  # other settings or another teacher: rebuilt
    return tensors["codes"]


def teacher_pool(teacher: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor, path: str | Path,
                 teacher_sha256: str, samples: int, steps: int, cfg_scale: float, temperature: float, seed: int = 0,
                 batch_size: int = 64, precision: str = "fp32", progress: bool = True) -> torch.Tensor:
    """[C, samples, N] teacher codes: `samples` draws of each caption (MaskGIT, CFG, multinomial,
    Gumbel re-masking), cached in `path` (safetensors). The build writes the file after every batch
    and resumes from it; a file of other settings is rebuilt, a foreign one refused."""
    path = Path(path)
    key = pool_key(teacher_sha256, captions, caption_len, samples, steps, cfg_scale, temperature, seed, batch_size,
                   precision)
    C, N = len(captions), teacher.config.num_image_tokens
    rows = C * samples
    done = _read_pool(path, key)
    codes = torch.empty(0, N, dtype=torch.int16) if done is None else done
    caps, lens = captions.repeat_interleave(samples, 0), caption_len.repeat_interleave(samples, 0)
    starts = range(len(codes), rows, batch_size)
    teacher = teacher.eval()
    for b in tqdm(starts, desc="teacher pool", disable=not progress or not len(starts)):
        if b % batch_size:
            raise PoolError(f"{path}: holds {b} rows, not a whole number of batches of {batch_size}; delete it to rebuild")
        g = torch.Generator().manual_seed(seed * 1_000_003 + b // batch_size)
        with autocast(precision, teacher.device):
            out = t2i_generate(teacher, caps[b:b + batch_size], lens[b:b + batch_size], steps=steps, cfg_scale=cfg_scale,
                               temperature=temperature, generator=g)
        codes = torch.cat([codes, out.codes.to(torch.int16)])
        write_safetensors({"codes": codes}, path, {"format": POOL_FORMAT, "version": POOL_VERSION, "key": key,
                                                   "rows": rows})
    return codes.view(C, samples, N)


# --------------------------------------------------------------------------------------------
# The student's objective.


def matched_image_loss(m: ShowoModel, teacher: ShowoModel | None, dp: DistillParams, captions: torch.Tensor,
                       caption_len: torch.Tensor, start: torch.Tensor, samples: torch.Tensor,
                       generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Steps 1-4 above: the image loss (first pass + remask_weight * later passes) of the student `m`
    on K noisy starts per caption [G*K, N] and the captions' pool samples [G, K, N], with its
    diagnostics (match_gain, image_first, image_later)."""
    cfg, dev = m.config, m.device
    # 1. One pass from the noisy starts (K per caption, in groups).
    ids = t2i_sequences(captions, caption_len, image_state_ids(start, cfg), cfg).to(dev)
    logits = m.image_logits(ids, None, dp.dm.embed_noise, generator)
    # 2. Pair starts and samples within each caption: by the student's own likelihood (all
    # positions), or by the frozen teacher's at the start's masked positions (a fixed coupling).
    if dp.dm.pairing == "teacher":
        with torch.no_grad():
            pair_logits = teacher.image_logits(ids)
        target, gain = assign_samples(pair_logits, samples, start < 0)
    else:
        target, gain = assign_samples(logits, samples)
    # 3. The first pass towards its sample, at every position.
    target = target.to(dev)
    first = F.cross_entropy(logits.float().flatten(0, 1), target.flatten())
    # 4. The later passes: the assigned samples re-masked, MaskGIT's loss at the masked positions.
    state, masked = remask(target.cpu(), generator)
    later_logits = m.image_logits(t2i_sequences(captions, caption_len, image_state_ids(state, cfg), cfg).to(dev))
    masked = masked.to(dev)
    later = F.cross_entropy(later_logits[masked].float(), target[masked])
    return first + dp.dm.remask_weight * later, {"match_gain": gain.to(dev), "image_first": first.detach(),
                                                 "image_later": later.detach()}


class MatchedObjective(nn.Module):
    """The student's losses (steps 1-5 above); only the student is a submodule (DDP syncs it)."""

    def __init__(self, student: ShowoModel, dp: DistillParams, teacher: ShowoModel | None = None):
        super().__init__()
        self.student, self.dp = student, dp
        self.__dict__["teacher"] = teacher  # frozen, not a submodule; pairs the samples with pairing: teacher

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        m = self.student
        dev = m.device
        caps, lens, start, samples = (batch[k].cpu() for k in ("caption", "caption_len", "start", "samples"))
        out = {}
        out["image"], diagnostics = matched_image_loss(m, self.teacher, self.dp, caps, lens, start, samples, generator)
        out.update(diagnostics)
        # 5. Text, as the other stages.
        out["lm"] = lm_loss(m, caps.to(dev), lens.to(dev))
        out.update(text_losses(m, {k: v.to(dev) for k, v in batch.items() if k not in ("start", "samples")}))
        out["total"] = total_loss(out, self.dp)
        return out
