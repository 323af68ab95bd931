"""Set-up files agree with each other: environment.yml vs pyproject.toml, .ci/run vs README."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_agrees_with_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(pyproject["dependencies"]) | set(pyproject["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) - {"-e ."} == wanted
    assert "torch==2.13.0" in wanted
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(bash scripts/\S+\.sh)\s*(?:#.*)?$", readme, re.M)
    assert "bash scripts/repro.sh" in commands and "bash scripts/test.sh" in commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["bash scripts/test.sh"]


def test_dvc_analytics_off():
    assert "analytics = false" in (ROOT / ".dvc" / "config").read_text()


def test_method_doc_references_resolve():
    """Every `docs/method.md, section N` in the code, notebooks and README names a section that exists,
    and nothing cites a design file that is not in the repository."""
    import re

    doc = (ROOT / "docs" / "method.md").read_text()
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", doc, flags=re.M)}
    files = [ROOT / "README.md", *(ROOT / "showo_turbo").rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb"),
             *(ROOT / "tests").glob("*.py")]
    cited = {(f.name, int(n)) for f in files for n in re.findall(r"docs/method\.md, section (\d+)", f.read_text())}
    assert cited and all(n in sections for _, n in cited), sorted(cited)
    assert not [f.name for f in files if f.name != "test_packaging.py" and "DESIGN.md" in f.read_text()]
