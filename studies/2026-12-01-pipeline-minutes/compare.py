"""Every score of one metrics/evaluate.json against the 95% intervals of another (the run before a
change), and each stage's minutes from the executed reports (papermill's own durations):

    python studies/2026-12-01-pipeline-minutes/compare.py BEFORE.json AFTER.json [--reports DIR]

T2I rows: the new score and whether it lies inside the old row's [ci_low, ci_high]. MMU rows: the
accuracies side by side (the Jacobi arms' passes per token too); accuracy has no interval in the
metrics, so a binomial 95% half-width of the old accuracy is shown beside it.
"""

import argparse
import json
import math
from pathlib import Path


def stage_minutes(reports: Path) -> dict[str, float]:
    out = {}
    for nb in sorted(reports.glob("*.ipynb")):
        meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        if meta.get("duration") is not None:
            out[nb.stem] = round(meta["duration"] / 60, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--reports", help="a folder of executed report notebooks (their papermill durations)")
    args = ap.parse_args()
    old, new = json.loads(Path(args.before).read_text()), json.loads(Path(args.after).read_text())
    print("| arm | steps | before (95% CI) | after (95% CI) | inside the interval before |")
    print("|---|---|---|---|---|")
    outside = 0
    for arm, rows in new["t2i"].items():
        for key, r in rows.items():
            o = old["t2i"].get(arm, {}).get(key)
            if o is None or "score" not in r:
                print(f"| {arm} | {key[6:]} | (not in the run before) | {r.get('score', float('nan')):.3f} "
                      f"({r.get('ci_low', float('nan')):.3f}-{r.get('ci_high', float('nan')):.3f}) | |")
                continue
            inside = o["ci_low"] <= r["score"] <= o["ci_high"]
            outside += not inside
            print(f"| {arm} | {key[6:]} | {o['score']:.3f} ({o['ci_low']:.3f}-{o['ci_high']:.3f}) | {r['score']:.3f} "
                  f"({r['ci_low']:.3f}-{r['ci_high']:.3f}) | {'yes' if inside else '**no**'} |")
    print(f"\nT2I scores outside the interval before: {outside}\n")
    print("| MMU arm | accuracy before (+-95%) | after | passes/token (eot) before | after | passes/token (block) before | after |")
    print("|---|---|---|---|---|---|---|")
    for arm, r in new["mmu"].items():
        o = old["mmu"].get(arm, {})
        n = r.get("n_questions", 400)
        acc = o.get("accuracy")
        half = 1.96 * math.sqrt(acc * (1 - acc) / n) if acc is not None else float("nan")
        fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {arm} | {fmt(acc)} (+-{half:.3f}) | {fmt(r['accuracy'])} | {fmt(o.get('forwards_per_token'))} | "
              f"{fmt(r.get('forwards_per_token'))} | {fmt(o.get('forwards_per_token_block'))} | {fmt(r.get('forwards_per_token_block'))} |")
    if args.reports:
        minutes = stage_minutes(Path(args.reports))
        print("\n| stage report | minutes |\n|---|---|")
        for k, v in minutes.items():
            print(f"| {k} | {v} |")
        print(f"| all reports | {sum(minutes.values()):.1f} |")


if __name__ == "__main__":
    main()
