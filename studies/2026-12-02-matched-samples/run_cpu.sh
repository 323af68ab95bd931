#!/usr/bin/env bash
# The matched-samples study (README.md here): exact commands, run from the repository root with the
# project's environment on PATH. FULL is a finished default pipeline (world, teacher, trajectories
# and the curriculum's students), e.g. a clean clone after `bash scripts/repro.sh`.
set -euo pipefail
FULL=${FULL:-/tmp/full}
run() {  # run NAME INIT_DIR THREADS --set ...: a dm stage with image_loss matched, scored at its milestones
    name=$1; init=$2; threads=$3; shift 3
    mkdir -p runs/match-$name/students
    if [[ $init != data/teacher ]]; then cp -r $FULL/$init runs/match-$name/students/; fi
    OMP_NUM_THREADS=$threads python scripts/distill_budget.py runs/match-$name --trajectories $FULL/data/trajectories \
        --world $FULL/data/world --teacher $FULL/data/teacher --device cpu \
        --set distill.precision=fp32 --set teacher.eval.precision=fp32 \
        --set "distill.stages={dm: {method: dm, segments: 1, init_dir: $init}}" \
        --set distill.dm.image_loss=matched "$@" > runs/match-$name.log 2>&1
    cp runs/match-$name/summary.json studies/2026-12-02-matched-samples/summary_$name.json
}
arm() {  # the turbo_dm arm's sampler (top-k 1 from the noisy start, 600 prompt-images as the evaluate stage)
    OMP_NUM_THREADS=${2:-2} python studies/2026-12-01-dm-student/sampler_sweep.py $1/model.safetensors \
        --world $FULL/data/world --arm-steps 1,2,4 --images-per-prompt 2
}
# 1. From the teacher: 150, 300 steps (the pool of 512 captions x 8 samples is built first).
run A data/teacher 2 --milestones 150,300
arm runs/match-A/students/dm
# 2. The same with the frozen teacher's likelihood pairing starts and samples (a fixed coupling);
#    the pool is run A's (same key: teacher, captions, sampler), copied instead of drawn again.
mkdir -p runs/match-B/students/dm && cp runs/match-A/students/dm/teacher_pool.safetensors runs/match-B/students/dm/
run B data/teacher 2 --milestones 150,300 --set distill.dm.pairing=teacher
arm runs/match-B/students/dm
# 3. The dm objective with the matched cross-entropy beside it (image_loss dm_matched, weight 0.3),
#    and its control, the dm stage's defaults (image_loss dm), both from the teacher, 150 steps, two at
#    a time on one thread each (run C needs no pool; run D reuses run A's).
mkdir -p runs/match-D/students/dm && cp runs/match-A/students/dm/teacher_pool.safetensors runs/match-D/students/dm/
run C data/teacher 1 --milestones 150 --set distill.dm.image_loss=dm &
run D data/teacher 1 --milestones 150 --set distill.dm.image_loss=dm_matched --set distill.dm.matched_weight=0.3 &
wait
arm runs/match-C/students/dm 1 &
arm runs/match-D/students/dm 1 &
wait
