#!/usr/bin/env bash
# Hand-off runs of the few-step-passes study, in the finished default pipeline's folder (data/ of a
# clean-clone `bash scripts/repro.sh`): bash studies/2026-12-07-few-step-passes/run_handoff.sh
set -euo pipefail
S=$(dirname "$0")
T=data/teacher/model.safetensors
U=data/students/seg1/model.safetensors
run() { OMP_NUM_THREADS=2 python "$S/handoff.py" --out "$S/handoff.jsonl" "$@"; }
run --label "seg1 pass 1 -> teacher_cfg" --a $U --a-steps 2 --b $T --b-cfg 2 --b-steps 16
run --label "teacher_cfg pass 1 -> teacher_cfg" --a $T --a-cfg 2 --a-steps 2 --b $T --b-cfg 2 --b-steps 16
run --label "teacher_cfg 8/16 -> seg1 one pass" --a $T --a-cfg 2 --a-steps 16 --a-run 8 --b $U --b-steps 2
run --label "teacher_cfg 8/16 -> teacher_cfg one pass" --a $T --a-cfg 2 --a-steps 16 --a-run 8 --b $T --b-cfg 2 --b-steps 2
run --label "seg1 8/16 -> seg1 one pass" --a $U --a-steps 16 --a-run 8 --b $U --b-steps 2
run --label "teacher_cfg 12/16 -> seg1 one pass" --a $T --a-cfg 2 --a-steps 16 --a-run 12 --b $U --b-steps 2
run --label "teacher_cfg 4/16 -> seg1 one pass" --a $T --a-cfg 2 --a-steps 16 --a-run 4 --b $U --b-steps 2
# The dm student (its arm's sampler: noisy start 0.6, top-k 1) on either side of the hand-off.
D=data/students/dm/model.safetensors
run --label "dm pass 1 -> teacher_cfg" --a $D --a-mask-ratio 0.6 --a-top-k 1 --a-steps 2 --b $T --b-cfg 2 --b-steps 16
run --label "teacher_cfg 8/16 -> dm one pass" --a $T --a-cfg 2 --a-steps 16 --a-run 8 --b $D --b-top-k 1 --b-steps 2
run --label "dm pass 1 -> seg1 one pass" --a $D --a-mask-ratio 0.6 --a-top-k 1 --a-steps 2 --b $U --b-steps 2
run --label "dm pass 1 of 4 -> seg1 3 steps" --a $D --a-mask-ratio 0.6 --a-top-k 1 --a-steps 4 --b $U --b-steps 4
run --label "seg1 pass 1 of 4 -> teacher_cfg" --a $U --a-steps 4 --b $T --b-cfg 2 --b-steps 16
run --label "teacher_cfg pass 1 of 4 -> teacher_cfg" --a $T --a-cfg 2 --a-steps 4 --b $T --b-cfg 2 --b-steps 16
# Where a 4-step run loses: its first 2 or 3 passes, finished by the teacher's remaining steps.
run --label "seg1 passes 1-2 of 4 -> teacher_cfg" --a $U --a-steps 4 --a-run 2 --b $T --b-cfg 2 --b-steps 16
run --label "seg1 passes 1-3 of 4 -> teacher_cfg" --a $U --a-steps 4 --a-run 3 --b $T --b-cfg 2 --b-steps 16
run --label "teacher_cfg passes 1-2 of 4 -> teacher_cfg" --a $T --a-cfg 2 --a-steps 4 --a-run 2 --b $T --b-cfg 2 --b-steps 16
run --label "teacher_cfg 4/16 -> seg1 3 steps" --a $T --a-cfg 2 --a-steps 16 --a-run 4 --b $U --b-steps 4
# The dm student's first pass sampled (multinomial, confidence order) instead of top-k 1 (a uniformly random order).
run --label "dm pass 1 multinomial -> teacher_cfg" --a $D --a-mask-ratio 0.6 --a-steps 2 --b $T --b-cfg 2 --b-steps 16
run --label "dm pass 1 of 4 -> teacher_cfg" --a $D --a-mask-ratio 0.6 --a-top-k 1 --a-steps 4 --b $T --b-cfg 2 --b-steps 16
