"""A mixture student (`method: mixture`, preset params/mixture.yaml): Di4C's latent input and
mixture likelihood (Hayakawa et al., "Distillation of Discrete Diffusion through Dimensional
Correlations", arXiv 2410.08709, Section 4; code sony/di4c, maskgit-pytorch/Trainer/vit.py).

From an all-[MASK] state a product of per-position distributions cannot hold a joint over layouts
and colours. Here the student also sees a scalar lambda ~ U(0, 1) (`model.showo.MixtureLatent`), so
that its distribution is the mixture E_lambda prod_d p(x_d | x_t, lambda): each lambda may choose a
mode, and the mixture holds the correlations. The sampler draws a fresh lambda per image at every
step (`t2i_generate`), as Di4C's does. One update, on the curriculum's trajectory batches
(methods/consistency.py, steps 1-2: x_t, its masked positions, the teacher's target distribution q
at the segment's end, and the row's final image x0, the teacher's own continuation from x_t):

1. M = `draws` lambdas per row; the student at x_t once per lambda (one batch of B*M rows): log p_m;
2. marginal term: soft cross-entropy of the mixture's marginal pbar = mean_m p_m against q, over the
   masked positions (the consistency loss itself when M = 1; Di4C's "indep" KL terms);
3. joint term: Di4C's correlated data term with its control variate,
       -[log mean_m prod_d p_m(x0_d) - sum_d log pbar(x0_d)]     (d: the positions masked in x_t),
   weighted by `weight_joint` * sigmoid(20 (0.5 - r)) with r = cos(pi/2 * masked fraction), Di4C's
   alpha_t (r is its "time": 0 all masked, 1 clean), so heavily masked states count most.
   With q equal to x0's marginal, terms 2 + 3 are the mixture's negative log-likelihood of x0;
   the control variate only lowers the variance of its gradient;
4. text: Jacobi consistency + AR + LM (methods/text.py), as every method;
5. total: w_img (marginal + joint) + w_lm L_lm + w_text (...), both image terms per masked position.

Not taken from Di4C: its distillation term (the teacher's one-step KL near the clean end) and its
consistency term (the student's samples from the teacher's next state); here the teacher enters
through q and x0 of its trajectories instead, so a stage needs no teacher forward.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..model.showo import MixtureLatent, ShowoModel, load_model
from ..pipeline.params import NonNeg, PosInt, Section
from .consistency import ConsistencyObjective, Training as ConsistencyTraining
from .text import soft_cross_entropy

USES_TEACHER = False


class Params(Section):
    """`distill.mixture`: the mixture stages' budget, image batch, learning rate, lambdas and weight."""

    steps: PosInt
    batch_t2i: PosInt
    lr: NonNeg
    draws: PosInt           # M lambdas per example
    weight_joint: NonNeg    # Di4C's alpha_const


def sampler_start(section: Params) -> dict:
    return {}  # all-[MASK]: the randomness the student conditions on is its latent


def scored_steps(eval_steps: tuple[int, ...]) -> list[int]:
    return list(eval_steps)


def mixture_terms(log_probs: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From per-draw log-probabilities `log_probs` [B, M, N, C], the codes `target` [B, N] and the
    positions counted `masked` [B, N]: (joint [B], marginal [B]), the mixture's log-likelihood of
    the target, log mean_m prod_d p_m(x_d), and the sum over d of its marginals' log pbar(x_d).
    logsumexp throughout: a product over hundreds of positions underflows in probabilities."""
    M = log_probs.shape[1]
    ll = log_probs.gather(-1, target.view(len(target), 1, -1, 1).expand(-1, M, -1, 1)).squeeze(-1)
    ll = ll * masked.unsqueeze(1)                                              # [B, M, N]
    joint = torch.logsumexp(ll.sum(-1), dim=1) - math.log(M)
    marginal = ((torch.logsumexp(ll, dim=1) - math.log(M)) * masked).sum(-1)
    return joint, marginal


def joint_weight(masked: torch.Tensor, weight: float) -> torch.Tensor:
    """[B]: `weight` * sigmoid(20 (0.5 - r)), r = cos(pi/2 * masked fraction) (Di4C's alpha_t)."""
    r = torch.cos(math.pi / 2 * masked.float().mean(-1))
    return weight * torch.sigmoid(20 * (0.5 - r))


class MixtureObjective(ConsistencyObjective):
    """The consistency objective with steps 1-3 above as its image losses."""

    def image_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        masked, M = batch["t2i_masked"], self.section.draws
        B, N = masked.shape
        # 1. The student at x_t under M lambdas per row.
        logits = self.student.image_logits(batch["t2i_ids"].repeat_interleave(M, 0), latent=batch["latent"])
        log_probs = logits.float().log_softmax(-1).view(B, M, N, -1)
        n = masked.sum().clamp(min=1)
        # 2. The mixture's marginal against the teacher's target distribution.
        log_pbar = torch.logsumexp(log_probs, dim=1) - math.log(M)
        marginal = (soft_cross_entropy(log_pbar, batch["t2i_probs"], batch["t2i_index"]) * masked).sum() / n
        # 3. The correlated term on the teacher's own continuation x0.
        joint, marginals = mixture_terms(log_probs, batch["t2i_final"], masked)
        correlated = (joint_weight(masked, self.section.weight_joint) * (marginals - joint)).sum() / n
        return {"marginal": marginal, "joint": correlated, "image": marginal + correlated}


def with_latent(model: ShowoModel, seed: int) -> ShowoModel:
    """`model` given a new mixture latent, its layers initialised from `seed`."""
    if model.config.mixture_latent:
        return model
    from dataclasses import replace

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.latent = MixtureLatent(model.config.hidden_size).to(model.device)
    model.config = replace(model.config, mixture_latent=True)
    return model


class Training(ConsistencyTraining):
    """A mixture stage: the consistency stage's student, optimizer and batches, with a latent."""

    Objective = MixtureObjective

    def load_student(self, path: Path) -> ShowoModel:
        return with_latent(load_model(path), self.dp.seed)  # seeded like the batches

    def draw(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        batch = super().draw(g)
        batch["latent"] = torch.rand(len(batch["t2i_ids"]) * self.section.draws, generator=g)
        return batch
