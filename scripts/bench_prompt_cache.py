"""The MaskGIT sampler with and without the prompt cache, side by side in one run: the fraction of
codes that agree (fp32, argmax, no Gumbel noise, so any difference is float rounding) and the
seconds per batch of each, alternating so that both see the same machine state.

    python scripts/bench_prompt_cache.py --prompts 200 --steps 16 --cfg 2 --batch 50

Prompts: the world's held-out T2I prompts (the first `--prompts`, all categories in turn).
"""

import argparse
import statistics
import sys
import time

import torch

from showo_turbo.pipeline.errors import run_cli
from showo_turbo.evaluation.harness import encode_captions
from showo_turbo.model.showo import load_model
from showo_turbo.model.sampling import t2i_generate
from showo_turbo.worlds import load_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--teacher", default="data/teacher")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    world = load_world(args.world)
    model = load_model(f"{args.teacher}/model.safetensors").to(args.device).eval()
    prompts, _ = world.eval_t2i()
    texts = [p.text for p in prompts][: args.prompts]
    caps, lens = encode_captions(world, texts)
    seconds = {True: [], False: []}
    codes = {True: [], False: []}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    t2i_generate(model, caps[:2], lens[:2], steps=2, cfg_scale=args.cfg)  # warm-up
    for i in range(0, len(texts), args.batch):
        for cached in (False, True):
            sync()
            t0 = time.perf_counter()
            res = t2i_generate(model, caps[i:i + args.batch], lens[i:i + args.batch], steps=args.steps,
                               cfg_scale=args.cfg, sample="argmax", temperature=0.0, min_remask=0, prompt_cache=cached)
            sync()
            seconds[cached].append(time.perf_counter() - t0)
            codes[cached].append(res.codes)
    a, b = torch.cat(codes[False]), torch.cat(codes[True])
    same_images = (a == b).all(1).float().mean().item()
    same_codes = (a == b).float().mean().item()
    plain, cached = statistics.median(seconds[False]), statistics.median(seconds[True])
    cfg = model.config
    print(f"{len(texts)} prompts, {args.steps} steps, CFG {args.cfg}, batch {args.batch}, {args.device}, "
          f"sequence {cfg.max_caption_tokens + 3} caption + {cfg.num_image_tokens + 2} image positions")
    print(f"codes equal: {same_codes:.4f} of positions, {same_images:.4f} of images")
    print(f"seconds per batch (median of {len(seconds[True])}): uncached {plain:.3f}, cached {cached:.3f}, "
          f"speed-up {plain / cached:.2f}x")


if __name__ == "__main__":
    sys.exit(run_cli(main, "bench_prompt_cache.py"))
