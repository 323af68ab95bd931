"""Few-step sampler grid: top-k of the sampled codes x Gumbel re-masking temperature, for any model
of the pipeline, on the evaluate stage's prompts and seeds (50 held-out prompts per category, 2 images
each, seeds 0 and 1, 1,000 bootstrap resamples), fp32:

    python studies/2026-12-06-few-step-sampler/sampler_grid.py data/students/seg1/model.safetensors \
        --steps 2,4 --top-k 0,2,4,8,16 --temperature 4.5,1,0

`--cfg` sets the guidance (the teacher_cfg arm: 2); `--mask-ratio` starts from a noise-input
student's state (the turbo_dm arm: 0.6). One line per grid point, in the order of the loops, so a
stopped run keeps what it printed; `--out` appends the same rows as JSON lines.
"""

import argparse
import json
import time

from showo_turbo.evaluate import t2i_sweep
from showo_turbo.model import load_model
from showo_turbo.teacher import eval_prompts_subset
from showo_turbo.worlds import load_world
from showo_turbo.worlds.shapes.scenes import CATEGORIES


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--steps", default="2,4")
    ap.add_argument("--top-k", default="0,4,16", help="0 = off (the evaluate stage's turbo arm)")
    ap.add_argument("--temperature", default="4.5", help="Gumbel re-masking temperatures (4.5: the arms until 2026-12-06; params.yaml now has 20)")
    ap.add_argument("--cfg", type=float, default=0.0)
    ap.add_argument("--mask-ratio", type=float, default=None)
    ap.add_argument("--sample", default="multinomial", choices=("multinomial", "argmax"),
                    help="argmax: the trajectory stage's deterministic codes (its order_temperature is --temperature)")
    ap.add_argument("--per-category", type=int, default=50)
    ap.add_argument("--images-per-prompt", type=int, default=2)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    world = load_world(args.world)
    model = load_model(args.model).eval()
    prompts = eval_prompts_subset(world, args.per_category)
    for t in ints(args.steps):
        for k in ints(args.top_k):
            for temp in map(float, args.temperature.split(",")):
                t0 = time.time()
                r = t2i_sweep(model, world, prompts, [t], [args.cfg], bootstrap=1000, seed=0, progress=False,
                              precision="fp32", temperature=temp, sample=args.sample, top_k=k or None,
                              init_mask_ratio=args.mask_ratio, images_per_prompt=args.images_per_prompt)
                r = r[f"steps_{t}.cfg_{args.cfg:g}"]
                row = {"label": args.label, "model": args.model, "cfg": args.cfg, "mask_ratio": args.mask_ratio,
                       **({"sample": args.sample} if args.sample != "multinomial" else {}),
                       "steps": t, "top_k": k, "temperature": temp, "seconds": round(time.time() - t0, 1),
                       **{key: r[key] for key in ("score", "ci_low", "ci_high", *CATEGORIES)}}
                cats = " / ".join(f"{r[c]:.2f}" for c in CATEGORIES)
                print(f"{args.label:<10} steps {t:>2}  top-k {k:>3}  temp {temp:>4g}  {r['score']:.3f} "
                      f"({r['ci_low']:.3f}-{r['ci_high']:.3f})  {cats}", flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
