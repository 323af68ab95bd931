"""Interleaved batch-1 timing on held-out questions: the teacher's AR with a KV cache, and a model's Jacobi
decoding (stop=eot, block 16) with the sampler before issue 32 (`old`) and after (`new`).

    git show 9e7951e:showo_turbo/model/sampling.py > /tmp/prof/sampling_old.py
    python jacobi_batch1.py WORLD_DIR MODEL.safetensors QUESTIONS ROUNDS THREADS [TEACHER.safetensors]
"""
import sys, time, statistics, importlib.util, torch
from showo_turbo.worlds import load_world
from showo_turbo.model.showo import load_model
from showo_turbo.model import sampling as new
from showo_turbo.evaluation.harness import mmu_prompts
spec = importlib.util.spec_from_file_location("showo_turbo.model.sampling_old", "/tmp/prof/sampling_old.py")
old = importlib.util.module_from_spec(spec); sys.modules[spec.name] = old; spec.loader.exec_module(old)
world = load_world(sys.argv[1]); model = load_model(sys.argv[2]); n = int(sys.argv[3]); rounds = int(sys.argv[4]); teacher = load_model(sys.argv[6]) if len(sys.argv) > 6 else model
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else torch.get_num_threads())
qs, imgs = world.eval_mmu(); prompts = mmu_prompts(world, qs[:n], imgs[:n], model.config)
max_new = world.answer_tokens + 1
def run(name):
    toks, passes, outs = 0, 0, []
    t0 = time.perf_counter()
    for i in range(n):
        p = prompts[i:i+1]
        if name == "ar": r = new.ar_generate(teacher, p, max_new_tokens=max_new)
        else:
            mod = old if name == "jacobi_old" else new
            r = mod.jacobi_generate(model, p, max_new_tokens=max_new, block_size=16, generator=torch.Generator().manual_seed(0), stop="eot")
        toks += len(r.tokens[0]); passes += r.stats.get("row_forwards", [len(r.tokens[0])])[0]; outs.append(r.tokens[0])
    return toks / (time.perf_counter() - t0), passes / toks, outs
names = ["ar", "jacobi_old", "jacobi_new"]
for nm in names: run(nm)
res = {nm: [] for nm in names}; info = {}
for _ in range(rounds):
    for nm in names:
        tps, ppt, outs = run(nm); res[nm].append(tps); info[nm] = (ppt, outs)
ar = statistics.median(res["ar"])
print(f"threads {torch.get_num_threads()}, {n} questions, max_new {max_new}, {rounds} rounds (median)")
for nm in names:
    m = statistics.median(res[nm])
    print(f"{nm:11s} {m:7.1f} tok/s  x{m/ar:.2f} vs AR  passes/token {info[nm][0]:.3f}  same as AR: {info[nm][1] == info['ar'][1]}")
