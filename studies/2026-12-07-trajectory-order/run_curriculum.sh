# The sampler study's 200-step-per-stage curriculum (studies/2026-12-06-few-step-sampler,
# train_curriculum.sh), on T2I trajectories decoded deterministically in a Gumbel-perturbed order
# (trajectories.order_temperature = OT), then scored by the sampler grid at 2 and 4 steps.
# Usage: bash run_curriculum.sh CLONE OT, the clone's environment on PATH and its root on
# PYTHONPATH, after `dvc repro world` there and with the shipped teacher copied to data/teacher
# (model.safetensors, card.json). Writes CLONE/params_ot.yaml and CLONE/grid_ot.jsonl.
set -e
cd "$1"; OT=$2
python - "$OT" <<'P'
import sys, yaml
p = yaml.safe_load(open("params.yaml"))
p["trajectories"]["order_temperature"] = float(sys.argv[1])
p["distill"]["consistency"]["steps"] = 200
yaml.safe_dump(p, open("params_ot.yaml", "w"), sort_keys=False)
P
bash studies/2026-12-06-few-step-sampler/train_curriculum.sh . params_ot.yaml
python studies/2026-12-06-few-step-sampler/sampler_grid.py data/students/seg1/model.safetensors --steps 2,4 --top-k 0 \
    --temperature 20,4.5 --label turbo200_ot$OT --out grid_ot.jsonl
