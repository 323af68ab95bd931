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
# 4. Run A continued (second session, one thread beside other work): the same run resumed from its
#    600-step checkpoint to 1200 steps (a raised budget continues a finished stage).
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-A --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 900,1200 > runs/dm-A1200.log 2>&1
cp runs/dm-A/summary.json studies/2026-12-01-dm-student/summary_A1200.json
# 5. Where the gradient goes (a copy of the checkpoint while it is written: runs/dm-A/students/dm/checkpoint).
OMP_NUM_THREADS=1 python studies/2026-12-01-dm-student/grad_norms.py runs/dm-A/students/dm/checkpoint \
    --trajectories runs/trajectories --batches 3
# 6. Run C: run A without the text terms (images only), to see whether the unified text side holds the images back.
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-C --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set distill.weight_text=0 --set distill.weight_lm=0 \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 150,300 > runs/dm-C.log 2>&1
cp runs/dm-C/summary.json studies/2026-12-01-dm-student/summary_C.json
# 7. The student's first-pass sampler (multinomial, top-k 8 / 2, argmax) on run A's 1200-step student.
OMP_NUM_THREADS=1 python studies/2026-12-01-dm-student/sampler_sweep.py runs/dm-A/students/dm/model.safetensors
# 8. Run D: run A with the auxiliary model's lr at 1e-3, and its sampler sweep.
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-D --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set distill.dm.aux_lr=0.001 \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 150,300 > runs/dm-D.log 2>&1
cp runs/dm-D/summary.json studies/2026-12-01-dm-student/summary_D.json
python studies/2026-12-01-dm-student/sampler_sweep.py runs/dm-D/students/dm/model.safetensors
# 9. Run E (third session): the generator trained on its own few-step rollouts, train_steps drawn
#    from 1 / 2 / 4 per update (distribution_matching.student_rollout), from the teacher.
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-E --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set "distill.dm.train_steps=[1, 2, 4]" \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 150,300,450,600 > runs/dm-E.log 2>&1
cp runs/dm-E/summary.json studies/2026-12-01-dm-student/summary_E.json
OMP_NUM_THREADS=1 python studies/2026-12-01-dm-student/sampler_sweep.py runs/dm-E/students/dm/model.safetensors \
    --arm-steps 1,2,4
# 9b. Run E continued from its 600-step checkpoint (the same run, a raised budget).
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-E --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set "distill.dm.train_steps=[1, 2, 4]" \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 750,900 > runs/dm-E900.log 2>&1
cp runs/dm-E/summary.json studies/2026-12-01-dm-student/summary_E900.json
# 10. Run F: run E with every rollout 2 steps (train_steps [2]), to 300 steps.
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-F --trajectories runs/trajectories --device cpu \
    --set trajectories.precision=fp32 --set distill.precision=fp32 \
    --set teacher.eval.precision=fp32 --set teacher.eval.prompts_per_category=50 \
    --set "distill.dm.train_steps=[2]" \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/teacher}}" \
    --milestones 150,300 > runs/dm-F.log 2>&1
cp runs/dm-F/summary.json studies/2026-12-01-dm-student/summary_F.json
OMP_NUM_THREADS=1 python studies/2026-12-01-dm-student/sampler_sweep.py runs/dm-F/students/dm/model.safetensors \
    --arm-steps 1,2,4
# 11. Fifth session: the grid from the pipeline's start point. FULL is a finished default pipeline
#     (`bash scripts/repro.sh` in a clone, here /tmp/full: 600-step curriculum, its trajectories,
#     its dm stage as the baseline of this grid). Each run: the dm stage from that seg1, 150 steps,
#     the settings of that time (surrogate_norm sum, train_steps [1, 2, 4]; the defaults since
#     runs H-M are mean and [2, 4]) plus the knobs named, two runs at a time on one thread each.
FULL=/tmp/full
grid_run() {  # grid_run NAME --set ... : the dm stage from $FULL's seg1 with these overrides
    name=$1; shift
    mkdir -p runs/dm-$name/students && cp -r $FULL/data/students/seg1 runs/dm-$name/students/seg1
    OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-$name --trajectories $FULL/data/trajectories \
        --world $FULL/data/world --teacher $FULL/data/teacher --device cpu \
        --set distill.precision=fp32 --set teacher.eval.precision=fp32 \
        --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/students/seg1}}" \
        --set distill.dm.surrogate_norm=sum --set "distill.dm.train_steps=[1, 2, 4]" \
        --milestones 150 "$@" > runs/dm-$name.log 2>&1  # the later --set wins
    cp runs/dm-$name/summary.json studies/2026-12-01-dm-student/summary_$name.json
}
grid_run H --set distill.dm.surrogate_norm=mean &
grid_run I --set distill.dm.aux_init=student &
wait
grid_run J --set distill.dm.surrogate_norm=mean --set distill.dm.teacher_cfg_scale=3.0 &
grid_run K --set distill.dm.surrogate_norm=mean --set distill.dm.lr=0.0003 --set distill.dm.aux_lr=0.0009 &
wait
grid_run L --set distill.dm.surrogate_norm=mean --set distill.dm.jeffreys_beta=1.0 &
grid_run M --set distill.dm.surrogate_norm=mean --set "distill.dm.train_steps=[2, 4]" &
wait
# The turbo_dm arm's sampler (top-k 1, 600 prompt-images as in the evaluate stage) on each student.
for s in $FULL/data/students/dm runs/dm-{H,I,J,K,L,M}/students/dm; do
    OMP_NUM_THREADS=1 python studies/2026-12-01-dm-student/sampler_sweep.py $s/model.safetensors --world $FULL/data/world \
        --arm-steps 1,2,4 --images-per-prompt 2
done
# 12. Run M continued to 300 steps (in its own folder: the checkpoint's signature names its init_dir)
#     and run N (only 4-step rollouts), then the arm's sampler on both.
cp runs/dm-M/summary.json runs/dm-M/summary_150.json
OMP_NUM_THREADS=1 python scripts/distill_budget.py runs/dm-M --trajectories $FULL/data/trajectories \
    --world $FULL/data/world --teacher $FULL/data/teacher --device cpu \
    --set distill.precision=fp32 --set teacher.eval.precision=fp32 \
    --set "distill.stages={dm: {method: dm, segments: 1, init_dir: data/students/seg1}}" \
    --set distill.dm.surrogate_norm=mean --set "distill.dm.train_steps=[2, 4]" \
    --milestones 300 > runs/dm-M300.log 2>&1 &
grid_run N --set distill.dm.surrogate_norm=mean --set "distill.dm.train_steps=[4]" &
wait
cp runs/dm-M/summary.json studies/2026-12-01-dm-student/summary_M300.json
for s in runs/dm-M/students/dm runs/dm-N/students/dm; do
    OMP_NUM_THREADS=1 python studies/2026-12-01-dm-student/sampler_sweep.py $s/model.safetensors --world $FULL/data/world \
        --arm-steps 1,2,4 --images-per-prompt 2
done
