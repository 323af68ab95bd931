# The 200-step-per-stage curriculum student of the study, run in a clean clone after
# `dvc repro teacher` (the trajectory collection resumes a stopped store), with params.yaml's
# distill.steps set to 200 there (distill.consistency.steps in today's layout). Usage: bash probe_students.sh CLONE (the clone's environment on PATH).
set -e
bash "$(dirname "${BASH_SOURCE[0]}")/train_curriculum.sh" "$1" params.yaml
cd "$1"
S=studies/2026-12-06-few-step-sampler/sampler_grid.py
python $S data/students/seg1/model.safetensors --steps 2,4 --temperature 4.5,20 --label turbo200 --out grid_students.jsonl
python $S data/students/seg1/model.safetensors --steps 16 --temperature 4.5,20 --label turbo200 --out grid_students.jsonl
