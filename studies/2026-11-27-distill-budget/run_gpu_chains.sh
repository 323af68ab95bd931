#!/bin/bash
# Session 4b: score vs distillation budget. Four chained stages of the same segment count (a->b->c->d,
# 250 steps each), scored after each: P1 deterministic 2 segments, P2 stochastic (1 per caption)
# 2 segments, P3 deterministic 1 segment. Batch 256 + 64, lr 2e-4.
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 OMP_NUM_THREADS=4
tar xzf .gpu/world.tgz
chain() { echo "{a: {method: consistency, segments: $1, init_dir: data/teacher}, b: {method: consistency, segments: $1, init_dir: data/students/a}, c: {method: consistency, segments: $1, init_dir: data/students/b}, d: {method: consistency, segments: $1, init_dir: data/students/c}}"; }
COMMON="--teacher teacher/shapes-base --device cuda --set trajectories.batch_size=512 --set distill.consistency.batch_t2i=256 --set distill.batch_mmu=64 --set distill.warmup_steps=50 --set distill.checkpoint_every=1000 --set distill.log_every=50 --set distill.consistency.lr=0.0002 --set distill.consistency.steps=${STEPS:-250} --set distill.eval_steps=[2,4,8]"
mkdir -p runs
db() { timeout ${CAP:-300} python3 scripts/distill_budget.py "$@" $COMMON; }
db runs/det --collect-only > runs/det_collect.log 2>&1 &
P1=$!
db runs/P2 --set trajectories.decoding=stochastic --set "distill.stages=$(chain 2)" > runs/P2.log 2>&1 &
wait $P1; echo "det collected at +$(( $(date +%s) - T0 )) s"
db runs/P1 --trajectories runs/det/trajectories --set "distill.stages=$(chain 2)" > runs/P1.log 2>&1 &
db runs/P3 --trajectories runs/det/trajectories --set "distill.stages=$(chain 1)" > runs/P3.log 2>&1 &
wait
echo "all done at +$(( $(date +%s) - T0 )) s"
for n in P1 P2 P3; do echo "== $n"; grep "^[abcd]:\|rror" runs/$n.log; done
tar czf $OUT/logs.tgz runs/*.log runs/*/summary.json runs/*/students/*/history.jsonl
