"""The README is a front page, and every page's links and commands point at things that exist."""
import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= 12_000
    # the two quick-start commands: the main job, and the tests as CI runs them (.ci/run)
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"
    assert f"    {install} && dvc repro\n" in text
    assert f"    {install} && python -m pytest -q\n" in text
    assert "python -m pytest -q" in (ROOT / ".ci/run").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_command_points_at_something_that_exists(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"https?://", target):
            assert (page.parent / target).exists(), f"{page.name}: link to {target}"
    for module in re.findall(r"python -m ([\w.]+)", text):
        if module.split(".")[0] in ("stages", "scripts", "benchmarks") and not placeholder(module):
            assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{page.name}: {module}"
    for path in re.findall(r"\b((?:experiments|stages|scripts|vae_anomaly|docs)/[\w./-]+\.(?:yaml|py|md|png))", text):
        if not placeholder(path):
            assert (ROOT / path).exists() or (page.parent / path).exists(), f"{page.name}: {path}"


def placeholder(name: str) -> bool:
    """`stages.NAME`, `reports/experiments/NAME.md`: a pattern, not a file."""
    return bool(re.search(r"\b[A-Z]{3,}\b", name))
