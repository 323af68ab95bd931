"""Few-step mask schedule grid: how many positions each MaskGIT step commits, for any model of the
pipeline, on the evaluate stage's prompts and seeds (50 held-out prompts per category, 2 images each,
seeds 0 and 1, 1,000 bootstrap resamples), the evaluate stage's sampler otherwise (multinomial,
Gumbel re-masking temperature 20, precision auto):

    python studies/2026-12-07-few-step-passes/schedule_grid.py data/teacher/model.safetensors --cfg 2 \
        --steps 2,4 --schedule cosine,linear,cubic,convex

A schedule is the masked fraction left after progress r = (k+1)/T; the library's is cosine. The
grid swaps it in `showo_turbo.sampling.mask_schedule` for the run (`tokens_to_remask` looks the name
up at call time); `cospow<p>` is cos(r pi/2) ** p. One line per grid point; `--out` appends the rows as JSON lines.
"""

import argparse
import json
import math
import time

import showo_turbo.sampling as sampling
from showo_turbo.evaluate import t2i_sweep
from showo_turbo.model import load_model
from showo_turbo.teacher import eval_prompts_subset
from showo_turbo.worlds import load_world
from showo_turbo.worlds.shapes.scenes import CATEGORIES
SCHEDULES = {
    "cosine": sampling.mask_schedule,                       # the library's: Show-o / MaskGIT
    "linear": lambda r: 1 - r,                              # more committed early than cosine
    "convex": lambda r: (1 - r) ** 2,                       # most committed early
    "cubic": lambda r: 1 - r ** 3,                          # fewest committed early
    "sqrtcos": lambda r: math.sqrt(max(math.cos(r * math.pi / 2), 0.0)),  # between cosine and cubic
}


def schedule(name: str):
    """A named schedule, or `cospow<p>`: cos(r pi/2) ** p (p < 1 commits fewer positions early)."""
    if name.startswith("cospow"):
        p = float(name[len("cospow"):])
        return lambda r: max(math.cos(r * math.pi / 2), 0.0) ** p
    return SCHEDULES[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--steps", default="2,4")
    ap.add_argument("--schedule", default=",".join(SCHEDULES))
    ap.add_argument("--cfg", type=float, default=0.0)
    ap.add_argument("--temperature", type=float, default=20.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--mask-ratio", type=float, default=None, help="noise-input start (the turbo_dm arm: 0.6)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    world = load_world(args.world)
    model = load_model(args.model).eval()
    prompts = eval_prompts_subset(world, 50)
    for name in args.schedule.split(","):
        sampling.mask_schedule = schedule(name)
        for t in map(int, args.steps.split(",")):
            t0 = time.time()
            r = t2i_sweep(model, world, prompts, [t], [args.cfg], bootstrap=1000, seed=0, progress=False,
                          precision="auto", temperature=args.temperature, top_k=args.top_k or None,
                          init_mask_ratio=args.mask_ratio, images_per_prompt=2)[f"steps_{t}.cfg_{args.cfg:g}"]
            left = [math.floor(model.config.num_image_tokens * schedule(name)((k + 1) / t)) for k in range(t)]
            row = {"label": args.label, "model": args.model, "cfg": args.cfg, "schedule": name, "steps": t,
                   "masked_after": left, "temperature": args.temperature, "top_k": args.top_k,
                   "mask_ratio": args.mask_ratio, "seconds": round(time.time() - t0, 1),
                   **{key: r[key] for key in ("score", "ci_low", "ci_high", *CATEGORIES)}}
            print(f"{args.label} {name:8s} {t:2d} steps masked {left}: {r['score']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f}) "
                  + " / ".join(f"{r[c]:.2f}" for c in CATEGORIES) + f"  [{row['seconds']} s]", flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    sampling.mask_schedule = SCHEDULES["cosine"]  # the library's own function back


if __name__ == "__main__":
    main()
