# The sampler study's curriculum student: teacher trajectories (resuming a stopped store), then
# seg4 -> seg2 -> seg1 with `python -m showo_turbo.distill`, all on the params file PARAMS.
# Usage: bash train_curriculum.sh CLONE PARAMS (the clone's environment on PATH; world stage done,
# the teacher in data/teacher). Used by probe_students.sh and studies/2026-12-07-trajectory-order.
set -e
cd "$1"; PARAMS=$2
python - "$PARAMS" <<'P'
import sys, time
from pathlib import Path
from showo_turbo import trajectories as TJ
from showo_turbo.model import load_model
from showo_turbo.params import load_params
from showo_turbo.worlds import load_world
tp = load_params(sys.argv[1]).trajectories
world = load_world("data/world")
teacher = load_model("data/teacher/model.safetensors")
t0 = time.time(); TJ.collect_t2i(teacher, world, tp, Path("data/trajectories/t2i"), restart=False); print("t2i", time.time() - t0, flush=True)
t0 = time.time(); TJ.collect_mmu(teacher, world, tp, Path("data/trajectories/mmu"), restart=False); print("mmu", time.time() - t0, flush=True)
P
for s in seg4 seg2 seg1; do
  t0=$(date +%s)
  python -m showo_turbo.distill --params "$PARAMS" --stage $s --trajectories data/trajectories --teacher data/teacher --out data/students/$s
  echo "$s done in $(( $(date +%s) - t0 )) s"
done
