"""RESULTS.md and metrics/headline.json, written by the evaluate stage from its own metrics: no figure
in them is typed by hand.

    text = results_markdown(metrics)        # metrics/evaluate.json as a dict, with its `machine` record
    headline(metrics)                       # the few figures DVC shows as metrics (`dvc metrics show`, `dvc exp show`)
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from ..model.showo import hardware
from ..pipeline.io import atomic_path


def machine(device: str, precision: str) -> dict:
    """Where the figures were measured: CPU model and cores, GPU, torch, the resolved precision, the date."""
    hw = hardware()
    return {"cpu": hw["cpu"] or platform.processor(), "cores": os.cpu_count(), "gpu": hw["gpu"] if device == "cuda" else None,
            "torch": hw["torch"], "precision": precision, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


def _cell(row: dict, ref: dict | None) -> str:
    if "score" not in row:
        return f"{row['seconds_per_image']:.4f} s"
    out = f"{row['score']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    if ref is not None and ref.get("score"):
        out += f" {row['score'] / ref['score']:.2f}x, {ref['seconds_per_image'] / row['seconds_per_image']:.1f}x faster"
    return out


def results_markdown(metrics: dict) -> str:
    """The evaluate stage's tables as Markdown: T2I (every arm x step count: score, 95% interval, and
    for the students the score ratio and speed-up against teacher_cfg at its most steps) and MMU."""
    t2i, mmu, m = metrics["t2i"], metrics["mmu"], metrics.get("machine", {})
    steps = sorted({int(k.split("_")[1]) for rows in t2i.values() for k in rows})
    most = f"steps_{steps[-1]}"
    ref = t2i["teacher_cfg"][most]
    where = m.get("gpu") or f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    lines = ["# Results", "",
             f"Written by the evaluate stage from `metrics/evaluate.json` on {m.get('date', '?')}: {where}, "
             f"torch {m.get('torch', '?')}, {m.get('precision', '?')}. Rerun with `bash scripts/repro.sh`.", "",
             "## Text to image", "",
             f"Score with its 95% interval; for the students, the score as a fraction of teacher_cfg at {steps[-1]} "
             "steps and the speed-up in seconds per image (batched).", "",
             "| arm | " + " | ".join(f"{t} step{'s' if t > 1 else ''}" for t in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for arm, rows in t2i.items():
        cells = [_cell(rows[f"steps_{t}"], ref if arm.startswith("turbo") else None) if f"steps_{t}" in rows else ""
                 for t in steps]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "## Image understanding (held-out questions)", "",
              "| arm | accuracy | passes per token | passes per token (whole block) | tokens/s batched | tokens/s batch 1 |",
              "|---|---|---|---|---|---|"]
    for arm, r in mmu.items():
        lines.append(f"| {arm} | {r['accuracy']:.3f} | {r['forwards_per_token']:.3f} | {r['forwards_per_token_block']:.3f} | "
                     f"{r['tokens_per_second']:.1f} | {r['tokens_per_second_batch1']:.1f} |")
    return "\n".join(lines) + "\n"


def headline(metrics: dict) -> dict:
    """The figures `dvc metrics show` and `dvc exp show` list, few enough for a terminal: teacher_cfg's
    score at the most steps, the curriculum student's (`turbo`) at every other step count, and its
    Jacobi passes per token and batch-1 text speed against the teacher's AR. The full record stays in
    metrics/evaluate.json."""
    t2i, mmu = metrics["t2i"], metrics["mmu"]
    steps = sorted(int(k.split("_")[1]) for k in t2i["teacher_cfg"])
    def score(arm: str, t: int) -> float | None:  # None: a world without a scorer
        s = t2i[arm][f"steps_{t}"].get("score")
        return None if s is None else round(s, 4)
    out = {f"teacher_cfg@{steps[-1]}": score("teacher_cfg", steps[-1]), **{f"turbo@{t}": score("turbo", t) for t in steps[:-1]}}
    out["passes/token"] = round(mmu["turbo_jacobi"]["forwards_per_token"], 3)
    out["text_speedup_b1"] = round(mmu["turbo_jacobi"]["tokens_per_second_batch1"] / mmu["teacher_ar"]["tokens_per_second_batch1"], 3)
    return out


def write_results(metrics: dict, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(results_markdown(metrics))
    return path
