# The 200-step-per-stage curriculum student of the study, run in a clean clone after
# `dvc repro teacher` (the trajectory collection resumes a stopped store), with params.yaml's
# distill.steps set to 200 there (distill.consistency.steps in today's layout). Usage: bash probe_students.sh CLONE (the clone's environment on PATH).
set -e
cd "$1"
S=studies/2026-12-06-few-step-sampler/sampler_grid.py
python - <<'P'
import time
from pathlib import Path
from showo_turbo import trajectories as TJ
from showo_turbo.model import load_model
from showo_turbo.params import load_params
from showo_turbo.worlds import load_world
tp = load_params("params.yaml").trajectories
world = load_world("data/world")
teacher = load_model("data/teacher/model.safetensors")
t0 = time.time(); TJ.collect_t2i(teacher, world, tp, Path("data/trajectories/t2i"), restart=False); print("t2i", time.time() - t0, flush=True)
t0 = time.time(); TJ.collect_mmu(teacher, world, tp, Path("data/trajectories/mmu"), restart=False); print("mmu", time.time() - t0, flush=True)
P
for s in seg4 seg2 seg1; do
  t0=$(date +%s)
  python -m showo_turbo.distill --params params.yaml --stage $s --trajectories data/trajectories --teacher data/teacher --out data/students/$s
  echo "$s done in $(( $(date +%s) - t0 )) s"
done
python $S data/students/seg1/model.safetensors --steps 2,4 --temperature 4.5,20 --label turbo200 --out grid_students.jsonl
python $S data/students/seg1/model.safetensors --steps 16 --temperature 4.5,20 --label turbo200 --out grid_students.jsonl
