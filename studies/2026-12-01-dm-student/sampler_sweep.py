"""The 1-step sampler of a dm student: multinomial vs top-k vs argmax for its one pass (the
Gumbel re-masking temperature does not matter at 1 step), on the first 50 held-out prompts per
category, same seed:

    python studies/2026-12-01-dm-student/sampler_sweep.py runs/dm-A/students/dm/model.safetensors

`--arm-steps 1,2,4` scores instead the `turbo_dm` arm's sampler (top-k 1 at every step, the
Gumbel re-masking of the eval sampler after the first pass) at those step counts.
"""

import argparse

from showo_turbo.evaluate import t2i_sweep
from showo_turbo.model import load_model
from showo_turbo.teacher import eval_prompts_subset
from showo_turbo.worlds import load_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("student")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--per-category", type=int, default=50)
    ap.add_argument("--mask-ratio", type=float, default=0.6)
    ap.add_argument("--arm-steps", default="", help="comma-separated step counts for the arm's sampler (top-k 1)")
    ap.add_argument("--images-per-prompt", type=int, default=1, help="2 = the evaluate stage's layout (seeds 0 and 1)")
    args = ap.parse_args()
    world = load_world(args.world)
    model = load_model(args.student).eval()
    prompts = eval_prompts_subset(world, args.per_category)
    if args.arm_steps:
        for t in map(int, args.arm_steps.split(",")):
            r = t2i_sweep(model, world, prompts, [t], [0.0], bootstrap=1000, seed=0, progress=False, precision="fp32",
                          temperature=4.5, init_mask_ratio=args.mask_ratio, sample="multinomial", top_k=1,
                          images_per_prompt=args.images_per_prompt)[f"steps_{t}.cfg_0"]
            cats = " / ".join(f"{r[c]:.2f}" for c in ("single_object", "colors", "two_object", "counting", "position", "color_attr"))
            print(f"top-k 1     {t} steps {r['score']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})  {cats}", flush=True)
        return
    for label, kw in (("multinomial", {"sample": "multinomial"}), ("top-k 8", {"sample": "multinomial", "top_k": 8}),
                      ("top-k 2", {"sample": "multinomial", "top_k": 2}), ("argmax", {"sample": "argmax"})):
        r = t2i_sweep(model, world, prompts, [1], [0.0], bootstrap=1000, seed=0, progress=False, precision="fp32",
                      temperature=4.5, init_mask_ratio=args.mask_ratio, **kw)["steps_1.cfg_0"]
        cats = " / ".join(f"{r[c]:.2f}" for c in ("single_object", "colors", "two_object", "counting", "position", "color_attr"))
        print(f"{label:<12} 1 step {r['score']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})  {cats}", flush=True)


if __name__ == "__main__":
    main()
