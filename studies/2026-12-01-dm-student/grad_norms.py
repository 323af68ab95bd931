"""How the dm stage's gradient splits between its image and text terms, and how much of it the
clip (distill.grad_clip) removes: for a student checkpoint, over a few batches, the norm of the
gradient of each weighted term on the student's parameters and of their sum.

    python studies/2026-12-01-dm-student/grad_norms.py runs/dm-A/students/dm/checkpoint --trajectories runs/trajectories
"""

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator

from showo_turbo.consistency import batch_generator
from showo_turbo.distribution_matching import DMTraining
from showo_turbo.params import CurriculumStage, load_params


def grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a dm stage's checkpoint folder (model, aux, state.pt)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--trajectories", default="data/trajectories")
    ap.add_argument("--teacher", default="data/teacher")
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args()
    dp = load_params(args.params).distill
    dp = replace(dp, precision="fp32")
    stage = CurriculumStage("dm", 1, args.teacher)
    training = DMTraining(Accelerator(cpu=True), stage, dp, args.trajectories, args.teacher, args.teacher,
                          Path(args.checkpoint))
    params = [p for p in training.student_model().parameters() if p.requires_grad]
    rows = []
    for i in range(args.batches):
        g = batch_generator(dp.seed + 17, 0, i)
        caps, lens, start = training._start(g)
        batch = {"caption": caps, "caption_len": lens, "start": start, **training.batches.draw_text(g)}
        out = training.objective(batch, g)
        terms = {"image": dp.weight_image * out["image"], "lm": dp.weight_lm * out["lm"],
                 "text": dp.weight_text * (out["consistency"] + dp.ar_multiplier * out["ar"])}
        norms = {k: grad_norm(v, params) for k, v in terms.items()}
        norms["total"] = grad_norm(out["total"], params)
        rows.append(norms)
        print(f"batch {i}: " + ", ".join(f"{k} {v:.3f}" for k, v in norms.items()), flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    kept = min(1.0, dp.grad_clip / mean["total"])
    print(f"mean: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items())
          + f"; clip {dp.grad_clip}: the update keeps {kept:.2f} of the gradient")


if __name__ == "__main__":
    main()
