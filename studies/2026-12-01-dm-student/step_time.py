"""One dm step against one consistency step, measured side by side (same machine, same run):

    python studies/2026-12-01-dm-student/step_time.py --trajectories runs/trajectories --steps 20 --precision fp32

Each method trains `--steps` steps from the teacher in a throw-away folder, twice, alternating
(consistency, dm, consistency, dm); the seconds per step of the second round count (the first
includes start-up). Prints both and their ratio. The dm method runs twice: with params.yaml's
`distill.dm.train_steps` and with the one-pass `[1]`.
"""

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from showo_turbo.distill import distill_stage, with_budget
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
    dp = replace(with_budget(dp, n), checkpoint_every=n, log_every=n, precision=args.precision)
    dm = CurriculumStage("dm", 1, args.teacher)
    runs = {"consistency": (CurriculumStage("consistency", 1, args.teacher), dp), f"dm {list(dp.dm.train_steps)}": (dm, dp),
            "dm [1]": (dm, replace(dp, dm=replace(dp.dm, train_steps=(1,))))}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):
            for i, (name, (stage, run_dp)) in enumerate(runs.items()):
                out = Path(tmp) / str(i)
                shutil.rmtree(out, ignore_errors=True)
                res = distill_stage(stage, run_dp, args.trajectories, out, progress=False, cpu=True, teacher_dir=args.teacher)
                seconds[name] = res["elapsed_seconds"] / n
    base = seconds["consistency"]
    print(f"precision {args.precision}, batch T2I {dp.consistency.batch_t2i} (dm {dp.dm.batch_t2i}, {dp.dm.aux_updates} auxiliary "
          f"updates) + MMU {dp.batch_mmu}: " + ", ".join(f"{k} {v:.2f} s/step ({v / base:.2f}x)" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
