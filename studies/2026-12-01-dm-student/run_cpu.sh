#!/usr/bin/env bash
# The exact commands of this study (2-core CPU without AVX512-BF16, so everything in fp32: bf16 is
# emulated there and 2.6x slower than fp32). Run from the repository root after `dvc repro world
# teacher` (data/world, data/teacher).
set -euo pipefail
# 1. Trajectories once (a dm stage's text losses read the MMU store; its captions come from the T2I store).
python scripts/distill_budget.py runs/dm --trajectories runs/trajectories --collect-only --device cpu \
    --set trajectories.precision=fp32
# 2. Step time, side by side.
OMP_NUM_THREADS=2 python studies/2026-12-01-dm-student/step_time.py --trajectories runs/trajectories --steps 10 --precision fp32
# 3. Run A: the params.yaml defaults of a dm stage, scored at every milestone (300 held-out prompts, 400 questions).
OMP_NUM_THREADS=2 python scripts/distill_budget.py runs/dm-A --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 150,300,450,600 > runs/dm-A.log 2>&1
cp runs/dm-A/summary.json studies/2026-12-01-dm-student/summary_A.json
