"""The GPU commands at micro scale on the CPU: scripts/gpu_study.py with a budget it cannot meet (it
still builds, collects, trains every stage of the preset, scores every arm and writes what a rented
machine sends back) and scripts/bench_speed.py's random-weight preset table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_study_runs_at_micro_scale(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_study.py"), "--minutes", "1", "--scale", "micro",
                          "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    steps = res["settings"]["evaluate"]["steps"]
    most, fewer = max(steps), [s for s in steps if s != max(steps)]
    assert set(res["scores"]) == {"teacher_cfg", "turbo", "turbo_dm"}
    assert set(res["scores"]["teacher_cfg"]) == {f"steps_{most}"}
    for arm in ("turbo", "turbo_dm"):
        assert set(res["scores"][arm]) == {f"steps_{t}" for t in fewer}
        for row in res["scores"][arm].values():
            assert 0.0 <= row["ci_low"] <= row["score"] <= row["ci_high"] <= 1.0
    table = run.stdout[run.stdout.index("arm "):]
    assert all(f"{t} steps" in table.splitlines()[0] for t in steps)
    assert all(any(line.startswith(arm) for line in table.splitlines()) for arm in res["scores"])
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["dm.safetensors", "results.json", "seg1.safetensors", "seg2.safetensors"]
    assert all(f.stat().st_size <= 16 * 2**20 for f in files)
    plan = res["plan"]["training"]["steps"]
    assert plan.keys() == {"consistency", "dm"} and all(s >= 1 for s in plan.values())


@pytest.mark.slow
def test_bench_speed_at_a_preset_size_with_random_weights():
    """The real-scale speed table (`--preset showo-256` on a GPU) at the toy size: every line, sane numbers."""
    import re
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_speed.py"), "--preset", "micro", "--device", "cpu"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    t2i = next(line for line in lines if line.startswith("T2I batch 1"))
    assert all(f"{t} steps" in t2i for t in (16, 4, 2, 1))
    mmu = next(line for line in lines if line.startswith("MMU batch 1"))
    ar, jacobi = (float(x) for x in re.findall(r"(?:AR\+KV|Jacobi) ([\d.]+),", mmu))
    assert ar > 0 and jacobi > 0 and "Jacobi / AR" in mmu
    train = next(line for line in lines if line.startswith("T2I training step"))
    assert [int(b) for b in re.findall(r"batch (\d+)", train)] == [1, 2, 4, 8]
    assert any(line.startswith("peak memory") for line in lines)
