# The sampler study's 200-step-per-stage curriculum (studies/2026-12-06-few-step-sampler,
# probe_students.sh), on T2I trajectories decoded deterministically in a Gumbel-perturbed order
# (trajectories.order_temperature = OT), then scored by the sampler grid at 2 and 4 steps.
# Usage: bash run_curriculum.sh CLONE OT, the clone's environment on PATH and its root on
# PYTHONPATH, after `dvc repro world` there and with the shipped teacher copied to data/teacher
# (model.safetensors, card.json). Writes CLONE/params_ot.yaml and CLONE/grid_ot.jsonl.
set -e
cd "$1"; OT=$2
S=studies/2026-12-06-few-step-sampler/sampler_grid.py
python - "$OT" <<'P'
import sys, yaml
p = yaml.safe_load(open("params.yaml"))
p["trajectories"]["order_temperature"] = float(sys.argv[1])
p["distill"]["consistency"]["steps"] = 200
yaml.safe_dump(p, open("params_ot.yaml", "w"), sort_keys=False)
P
python - <<'P'
import time
from pathlib import Path
from showo_turbo import trajectories as TJ
from showo_turbo.model import load_model
from showo_turbo.params import load_params
from showo_turbo.worlds import load_world
tp = load_params("params_ot.yaml").trajectories
world = load_world("data/world")
teacher = load_model("data/teacher/model.safetensors")
t0 = time.time(); TJ.collect_t2i(teacher, world, tp, Path("data/trajectories/t2i"), restart=False); print("t2i", time.time() - t0, flush=True)
t0 = time.time(); TJ.collect_mmu(teacher, world, tp, Path("data/trajectories/mmu"), restart=False); print("mmu", time.time() - t0, flush=True)
P
for s in seg4 seg2 seg1; do
  t0=$(date +%s)
  python -m showo_turbo.distill --params params_ot.yaml --stage $s --trajectories data/trajectories --teacher data/teacher --out data/students/$s
  echo "$s done in $(( $(date +%s) - t0 )) s"
done
python $S data/students/seg1/model.safetensors --steps 2,4 --top-k 0 --temperature 20,4.5 --label turbo200_ot$OT --out grid_ot.jsonl
