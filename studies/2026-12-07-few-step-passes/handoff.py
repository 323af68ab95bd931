"""Hand-offs between two models inside one MaskGIT trajectory: model A runs the first steps, model B
finishes from A's state. Which pass limits a few-step sampler: the first (layouts from all-[MASK]) or
the later ones (filling a layout in one parallel pass)? The evaluate stage's prompts, seeds and
sampler (50 held-out prompts per category, 2 images each, seeds 0 and 1; multinomial, Gumbel
re-masking temperature 20, precision auto), one generator per image set running through both models:

    python studies/2026-12-07-few-step-passes/handoff.py --a data/students/seg1/model.safetensors --a-cfg 0 \
        --a-steps 2 --a-run 1 --b data/teacher/model.safetensors --b-cfg 2 --b-steps 16

A runs `--a-run` steps of an `--a-steps`-step schedule; B resumes at the first step of its own
`--b-steps`-step schedule whose state has no more masked positions than A left (B's annealed
temperature replayed to that step), so B's remaining steps commit what its schedule says.
"""

import argparse
import json
import math
import time

import torch

from showo_turbo.evaluate import decode_codes, encode_captions
from showo_turbo.model import autocast, load_model
from showo_turbo.sampling import mask_schedule, t2i_generate
from showo_turbo.teacher import eval_prompts_subset
from showo_turbo.worlds import load_world
from showo_turbo.worlds.shapes.scenes import CATEGORIES


def resume_step(masked: int, steps: int, num_tokens: int) -> int:
    """The first step k of a `steps`-step cosine run whose state before k has <= `masked` masked positions."""
    for k in range(1, steps):
        if math.floor(num_tokens * mask_schedule(k / steps)) <= masked:  # what tokens_to_remask leaves after step k - 1
            return k
    return steps - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--a", required=True)
    ap.add_argument("--a-cfg", type=float, default=0.0)
    ap.add_argument("--a-steps", type=int, required=True)
    ap.add_argument("--a-run", type=int, default=1, help="steps A runs of its schedule")
    ap.add_argument("--a-mask-ratio", type=float, default=None, help="A from a noise-input start (the turbo_dm arm: 0.6)")
    ap.add_argument("--a-top-k", type=int, default=0, help="A's top-k (the turbo_dm arm: 1; 0 = off)")
    ap.add_argument("--b", required=True)
    ap.add_argument("--b-cfg", type=float, default=0.0)
    ap.add_argument("--b-steps", type=int, required=True)
    ap.add_argument("--b-top-k", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=20.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    world = load_world(args.world)
    a, b = load_model(args.a).eval(), load_model(args.b).eval()
    N = a.config.num_image_tokens
    prompts = eval_prompts_subset(world, 50)
    caps, lens = encode_captions(world, [p.text for p in prompts])
    t0, codes, starts = time.time(), [], []
    for i in range(2):  # the evaluate stage's images_per_prompt, seeds 0 and 1
        g = torch.Generator().manual_seed(i)
        for s in range(0, len(prompts), 64):
            c, l = caps[s:s + 64], lens[s:s + 64]
            with autocast("auto"):
                ra = t2i_generate(a, c, l, steps=args.a_steps, cfg_scale=args.a_cfg, temperature=args.temperature,
                                  top_k=args.a_top_k or None, init_mask_ratio=args.a_mask_ratio, generator=g,
                                  return_trajectory=True)
                state = ra.trajectory.states[args.a_run]
                masked = int((state < 0).sum(-1).max())
                k = resume_step(masked, args.b_steps, N)
                starts.append(k)
                rb = t2i_generate(b, c, l, steps=args.b_steps, cfg_scale=args.b_cfg, temperature=args.temperature,
                                  top_k=args.b_top_k or None, generator=g, init_codes=state, start_step=k)
            codes.append(rb.codes)
    scored = [p for _ in range(2) for p in prompts]
    r = world.scorer().score(decode_codes(world, torch.cat(codes)), scored, 1000, 0).to_dict()
    row = {"label": args.label, "a": args.a, "a_cfg": args.a_cfg, "a_steps": args.a_steps, "a_run": args.a_run,
           "a_mask_ratio": args.a_mask_ratio, "a_top_k": args.a_top_k, "b_top_k": args.b_top_k,
           "masked_after_a": masked, "b": args.b, "b_cfg": args.b_cfg, "b_steps": args.b_steps, "b_start": starts[0],
           "temperature": args.temperature, "seconds": round(time.time() - t0, 1),
           **{key: r[key] for key in ("score", "ci_low", "ci_high", *CATEGORIES)}}
    print(f"{args.label}: A {args.a_run}/{args.a_steps} steps -> {masked} masked -> B from step {starts[0]}/{args.b_steps}: "
          f"{r['score']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f}) " + " / ".join(f"{r[c]:.2f}" for c in CATEGORIES)
          + f"  [{row['seconds']} s]", flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
