"""One dm step against one consistency step, measured side by side (same machine, same run):

    python studies/2026-12-01-dm-student/step_time.py --trajectories runs/trajectories --steps 20 --precision fp32

Each method trains `--steps` steps from the teacher in a throw-away folder, twice, alternating
(consistency, dm, consistency, dm); the seconds per step of the second round count (the first
includes start-up). Prints both and their ratio.
"""

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from showo_turbo.distill import distill_stage
from showo_turbo.params import CurriculumStage, load_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--trajectories", default="data/trajectories")
    ap.add_argument("--teacher", default="data/teacher")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = ap.parse_args()
    dp = load_params(args.params).distill
    n = args.steps
    dp = replace(dp, steps=n, checkpoint_every=n, log_every=n, precision=args.precision, dm=replace(dp.dm, steps=n))
    stages = {"consistency": CurriculumStage("consistency", 1, args.teacher), "dm": CurriculumStage("dm", 1, args.teacher)}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):
            for name, stage in stages.items():
                out = Path(tmp) / name
                shutil.rmtree(out, ignore_errors=True)
                res = distill_stage(stage, dp, args.trajectories, out, progress=False, cpu=True, teacher_dir=args.teacher)
                seconds[name] = res["elapsed_seconds"] / n
    print(f"precision {args.precision}, batch T2I {dp.batch_t2i} (dm {dp.dm.batch_t2i}, {dp.dm.aux_updates} auxiliary "
          f"updates) + MMU {dp.batch_mmu}: consistency {seconds['consistency']:.2f} s/step, dm {seconds['dm']:.2f} s/step, "
          f"ratio {seconds['dm'] / seconds['consistency']:.2f}")


if __name__ == "__main__":
    main()
