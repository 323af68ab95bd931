"""The README is a guide: short, every figure in its results table generated from the metrics, links that resolve."""

import json
import re
from pathlib import Path

from showo_turbo.evaluation.results import README_BEGIN, README_END, readme_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_short_and_has_no_run_log():
    assert len(README.splitlines()) <= 250
    assert not re.search(r"\b(run|runs) [A-M]\b|this session|the issue", README)


def test_readme_headline_table_is_the_committed_metrics():
    """The block between the markers is exactly what `python -m showo_turbo.evaluation.results --readme`
    writes from metrics/evaluate.json: nobody types a figure into it."""
    block = README.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    metrics = json.loads((ROOT / "metrics" / "evaluate.json").read_text())
    assert block.strip("\n") == readme_table(metrics)


def test_readme_and_docs_links_resolve():
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), f"{doc.name}: link to {target}"
