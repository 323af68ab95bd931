"""Speed of every arm side by side in one run, batched and at batch 1 (the paper's latency), as
ratios to the teacher: T2I seconds per image against `teacher_cfg` at its most steps, MMU tokens
per second against `teacher_ar`. Runs on whatever device is given, so a GPU user gets the same
table on their device. Scores are not computed here (the evaluate stage does that).

    python scripts/bench_speed.py --device cuda                     # after `dvc repro distill`
    python scripts/bench_speed.py --steps 1,2,4,16 --questions 32   # a subset

Arms and sampler settings come from params.yaml's `evaluate` section (timing_batch, timing_repeats,
precision) and the stages with an `arm:` entry; models from data/teacher and data/students/<stage>.
"""

import argparse
import sys

import torch

from showo_turbo.evaluation.benchmark import (mmu_runs, seconds_per_image, seconds_per_image_batch1, student_arms,
                                              t2i_arms, tokens_per_second_batch1)
from showo_turbo.pipeline.errors import run_cli
from showo_turbo.evaluation.harness import mmu_eval
from showo_turbo.model.showo import load_model
from showo_turbo.pipeline.params import load_params, replace
from showo_turbo.evaluation.harness import eval_prompts_subset
from showo_turbo.worlds import load_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--teacher", default="data/teacher")
    ap.add_argument("--students", default="data/students")
    ap.add_argument("--steps", help="comma-separated T2I step counts (default: evaluate.steps)")
    ap.add_argument("--questions", type=int, help="MMU questions per arm (default: evaluate.timing_batch)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    params = load_params(args.params)
    ep = params.evaluate
    if args.steps:  # a subset of evaluate.steps (each arm's top-k covers those)
        steps = tuple(int(s) for s in args.steps.split(","))
        ep = replace(ep, steps=steps, student_top_k={t: ep.student_top_k.get(t, 0) for t in steps})
    world = load_world(args.world)

    def model(path):
        return load_model(f"{path}/model.safetensors").to(args.device).eval()

    teacher, student = model(args.teacher), model(f"{args.students}/{ep.student}")
    own = student_arms(params, lambda stage: model(f"{args.students}/{stage}"))
    arms = t2i_arms(teacher, student, ep, own)
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    rows = {}
    for t in ep.steps:
        batched = seconds_per_image(arms, world, prompts, t, ep)
        one = seconds_per_image_batch1(arms, world, prompts, t, ep)
        for name in batched:
            rows[(name, t)] = (batched[name], one[name])
    ref_b, ref_1 = rows[("teacher_cfg", max(ep.steps))]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"T2I on {device}, {ep.precision}; speed-up = teacher_cfg at {max(ep.steps)} steps / arm")
    print(f"{'arm':<15}{'steps':>6}{'s/image batched':>17}{'speed-up':>10}{'s/image batch 1':>17}{'speed-up':>10}")
    for (name, t), (b, one) in rows.items():
        print(f"{name:<15}{t:>6}{b:>17.4f}{ref_b / b:>10.2f}{one:>17.4f}{ref_1 / one:>10.2f}")
    n = args.questions or ep.timing_batch
    kw = {"block_size": ep.block_size, "seed": ep.seed, "precision": ep.precision, "jacobi_stop": "eot"}
    mmu = {}
    for name, (m, decoder) in mmu_runs(teacher, student, own).items():
        batched = mmu_eval(m, world, decoder, batch_size=ep.batch_size, limit=n, **kw)
        mmu[name] = (batched["tokens_per_second"], tokens_per_second_batch1(m, world, decoder, ep, n, **kw),
                     batched["forwards_per_token"])
    ar_b, ar_1, _ = mmu["teacher_ar"]
    print(f"\nMMU on {device}, {n} questions; ratio = arm / teacher_ar tokens per second; passes per token with stop=eot")
    print(f"{'arm':<17}{'tokens/s batched':>17}{'ratio':>8}{'tokens/s batch 1':>18}{'ratio':>8}{'passes/token':>14}")
    for name, (b, one, f) in mmu.items():
        print(f"{name:<17}{b:>17.1f}{b / ar_b:>8.2f}{one:>18.1f}{one / ar_1:>8.2f}{f:>14.2f}")


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_speed.py"))
