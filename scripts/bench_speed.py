"""Speed of every arm side by side in one run, batched and at batch 1 (the paper's latency), as
ratios to the teacher: T2I seconds per image against `teacher_cfg` at its most steps, MMU tokens
per second against `teacher_ar`. Runs on whatever device is given, so a GPU user gets the same
table on their device. Scores are not computed here (the evaluate stage does that).

    python scripts/bench_speed.py --device cuda                     # after `dvc repro distill`
    python scripts/bench_speed.py --steps 1,2,4,16 --questions 32   # a subset

Arms and sampler settings come from params.yaml's `evaluate` section (timing_batch, timing_repeats,
precision) and the stages with an `arm:` entry; models from data/teacher and data/students/<stage>.

At Show-o's size, with random weights (no pipeline outputs needed; a GPU's work, a few minutes):

    python scripts/bench_speed.py --preset showo-256 --preset showo-512 --device cuda

T2I latency at batch 1 (16 steps with CFG against 4 / 2 / 1 without, the full-size MAGVIT-v2 decode
included), MMU tokens per second at batch 1 (AR with a KV cache against Jacobi; random weights converge
slowly, so this is the cost of a pass, not a student's speed-up), peak memory, and the time of a T2I
training step (forward, backward, AdamW) at batch 1-8, in bf16 where the device has it natively.
`--preset micro` runs the same at a toy size (the test's).
"""

import argparse
import resource
import statistics
import sys
import time

import torch

from showo_turbo.evaluation.benchmark import (mmu_runs, seconds_per_image, seconds_per_image_batch1, student_arms,
                                              t2i_arms, tokens_per_second_batch1)
from showo_turbo.pipeline.errors import run_cli
from showo_turbo.evaluation.harness import mmu_eval
from showo_turbo.model.sampling import ar_generate, jacobi_generate, t2i_generate
from showo_turbo.model.showo import (ShowoModel, autocast, load_model, mask_image_tokens, mmu_prefix, preset_config,
                                     resolve_precision, t2i_loss, t2i_sequences)
from showo_turbo.pipeline.params import load_params, replace
from showo_turbo.evaluation.harness import eval_prompts_subset
from showo_turbo.worlds import load_world


# Random-weight models at a preset's size: the backbone config and MAGVIT-v2's.
SCALES = {
    "micro": (dict(text_size=64, codebook_size=64, num_image_tokens=16, max_caption_tokens=8, sot_id=1, eot_id=2),
              dict(image_size=64, channels=32, encoder_res_blocks=(1,) * 5, decoder_res_blocks=(1,) * 5, z_channels=6)),
    "showo-256": ({}, dict(image_size=256)),
    "showo-512": ({}, dict(image_size=512)),
}


def median_seconds(fn, device: str, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_preset(preset: str, device: str, new_tokens: int = 64) -> None:
    """The real-scale table of one preset (random weights), printed."""
    from showo_turbo.worlds.showo.magvit import MAGVITv2, MagvitConfig
    world_sizes, magvit = SCALES[preset]
    torch.manual_seed(0)
    cfg = preset_config("micro" if preset == "micro" else preset, **world_sizes)
    model = ShowoModel(cfg).to(device).eval()
    vq = MAGVITv2(MagvitConfig(**magvit)).to(device).eval()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    precision = resolve_precision("auto", device)
    g = torch.Generator().manual_seed(0)
    caption = torch.randint(3, cfg.text_size, (1, cfg.max_caption_tokens), generator=g)
    caption_len = torch.tensor([cfg.max_caption_tokens // 2])
    side = vq.grid_shape[0]
    print(f"\n{preset} on {device} ({precision}): {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{cfg.num_image_tokens} image tokens")

    def image(steps: int, cfg_scale: float) -> None:
        with autocast(precision, device):
            codes = t2i_generate(model, caption, caption_len, steps=steps, cfg_scale=cfg_scale, temperature=4.5,
                                 generator=torch.Generator().manual_seed(0)).codes
            vq.decode(codes.view(1, side, side).numpy())
    ref = median_seconds(lambda: image(16, 2.0), device)
    print(f"T2I batch 1 (s/image incl. decode): 16 steps CFG {ref:.3f}" + "".join(
        f"; {t} steps {s:.3f} ({ref / s:.1f}x)" for t, s in ((t, median_seconds(lambda: image(t, 0.0), device))
                                                            for t in (4, 2, 1))))
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_image_tokens), generator=g)
    prompt = torch.cat([mmu_prefix(codes + cfg.layout.code_offset, cfg), torch.randint(3, cfg.text_size, (1, 20), generator=g)], 1)
    runs = {}
    for name, fn in (("AR+KV", lambda: ar_generate(model, prompt, max_new_tokens=new_tokens)),
                     ("Jacobi", lambda: jacobi_generate(model, prompt, max_new_tokens=new_tokens, block_size=16, stop="eot"))):
        with autocast(precision, device):
            r = fn()
            runs[name] = (len(r.tokens[0]) / median_seconds(fn, device), r.stats.get("row_forwards", [r.forwards])[0] / len(r.tokens[0]))
    print("MMU batch 1 (tokens/s, passes/token): " + "; ".join(f"{k} {v:.1f}, {p:.2f}" for k, (v, p) in runs.items())
          + f" (Jacobi / AR {runs['Jacobi'][0] / runs['AR+KV'][0]:.2f}x)")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.startswith("cuda") or None)
    steps = {}
    for b in (1, 2, 4, 8):
        batch_codes = torch.randint(0, cfg.codebook_size, (b, cfg.num_image_tokens), generator=g)
        caps, lens = caption.expand(b, -1), caption_len.expand(b)

        def train_step() -> None:
            ids, masked = mask_image_tokens(batch_codes, cfg, g)
            seq = t2i_sequences(caps, lens, ids, cfg).to(device)
            with autocast(precision, device):
                loss = t2i_loss(model, seq, masked.to(device), batch_codes.to(device))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        steps[b] = median_seconds(train_step, device)
    print("T2I training step (s; forward, backward, AdamW): " + "; ".join(f"batch {b} {s:.3f}" for b, s in steps.items()))
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(f"peak memory: {peak:.1f} GiB ({'GPU' if device.startswith('cuda') else 'process, CPU'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=tuple(SCALES),
                    help="benchmark this backbone size with random weights instead of the pipeline's models (repeatable)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--teacher", default="data/teacher")
    ap.add_argument("--students", default="data/students")
    ap.add_argument("--steps", help="comma-separated T2I step counts (default: evaluate.steps)")
    ap.add_argument("--questions", type=int, help="MMU questions per arm (default: evaluate.timing_batch)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.preset:
        for preset in args.preset:
            bench_preset(preset, args.device)
        return
    params = load_params(args.params)
    ep = params.evaluate
    if args.steps:  # a subset of evaluate.steps (each arm's top-k covers those)
        steps = tuple(int(s) for s in args.steps.split(","))
        ep = replace(ep, steps=steps, student_top_k={t: ep.student_top_k.get(t, 0) for t in steps})
    world = load_world(args.world)

    def model(path):
        return load_model(f"{path}/model.safetensors").to(args.device).eval()

    teacher, student = model(args.teacher), model(f"{args.students}/{ep.student}")
    own = student_arms(params, lambda stage: model(f"{args.students}/{stage}"))
    arms = t2i_arms(teacher, student, ep, own)
    prompts = eval_prompts_subset(world, ep.prompts_per_category)
    rows = {}
    for t in ep.steps:
        batched = seconds_per_image(arms, world, prompts, t, ep)
        one = seconds_per_image_batch1(arms, world, prompts, t, ep)
        for name in batched:
            rows[(name, t)] = (batched[name], one[name])
    ref_b, ref_1 = rows[("teacher_cfg", max(ep.steps))]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"T2I on {device}, {ep.precision}; speed-up = teacher_cfg at {max(ep.steps)} steps / arm")
    print(f"{'arm':<15}{'steps':>6}{'s/image batched':>17}{'speed-up':>10}{'s/image batch 1':>17}{'speed-up':>10}")
    for (name, t), (b, one) in rows.items():
        print(f"{name:<15}{t:>6}{b:>17.4f}{ref_b / b:>10.2f}{one:>17.4f}{ref_1 / one:>10.2f}")
    n = args.questions or ep.timing_batch
    kw = {"block_size": ep.block_size, "seed": ep.seed, "precision": ep.precision, "jacobi_stop": "eot"}
    mmu = {}
    for name, (m, decoder) in mmu_runs(teacher, student, own).items():
        batched = mmu_eval(m, world, decoder, batch_size=ep.batch_size, limit=n, **kw)
        mmu[name] = (batched["tokens_per_second"], tokens_per_second_batch1(m, world, decoder, ep, n, **kw),
                     batched["forwards_per_token"])
    ar_b, ar_1, _ = mmu["teacher_ar"]
    print(f"\nMMU on {device}, {n} questions; ratio = arm / teacher_ar tokens per second; passes per token with stop=eot")
    print(f"{'arm':<17}{'tokens/s batched':>17}{'ratio':>8}{'tokens/s batch 1':>18}{'ratio':>8}{'passes/token':>14}")
    for name, (b, one, f) in mmu.items():
        print(f"{name:<17}{b:>17.1f}{b / ar_b:>8.2f}{one:>18.1f}{one / ar_1:>8.2f}{f:>14.2f}")


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_speed.py"))
