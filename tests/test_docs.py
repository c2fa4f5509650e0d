"""The newcomer's pages stay true: links resolve, the README stays short, its commands are
the ones that exist, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_dagrun

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = [link for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
              if "://" not in link and not (page.parent / link).exists()]
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_readme_is_short_and_says_how_to_reach_the_command() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12_000, "README.md is the newcomer's page: move detail to docs/"
    assert ".venv/bin/activate" in text and ".venv/bin/dagrun" in text


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", readme, re.M)
    assert re.search(r"^make test$", ci, re.M)


def test_every_command_of_the_synopsis_exists() -> None:
    blocks, inside = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            blocks.append(line)
    commands = {m.group(1) for line in blocks if (m := re.match(r"dagrun ([a-z]+)\b", line))}
    assert {"execute", "resume", "status", "results", "report", "worker"} <= commands
    helped = run_dagrun("--help").stdout
    for command in commands:
        assert re.search(rf"^    {command} ", helped, re.M), command
    assert run_dagrun("--version").stdout.startswith("dagrun ")
