"""Fixtures shared by the engine tests: the local backends, awkward folders, a counting sweep.

The helpers these fixtures use (running ``dagrun``, writing workflows, reading results) live
in ``tests/helpers.py``; test modules import them from there, never from this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import AWKWARD_NAME, LOCAL_BACKENDS, Sweep, make_sweep


@pytest.fixture(params=LOCAL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend that needs no service (ray and ssh: see test_contract.py)."""
    return str(request.param)


@pytest.fixture
def awkward_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder whose name has spaces, quotes and shell substitutions.

    Anything that passes it through a shell unquoted would create a file ``x`` or ``y`` in
    the working folder of the subprocess (this folder or one below it): checked at teardown.
    """
    path = tmp_path / AWKWARD_NAME
    path.mkdir()
    yield path
    expanded = [p for p in tmp_path.rglob("*") if p.name in ("x", "y")]
    assert not expanded, f"a shell expanded the folder name: {expanded}"


@pytest.fixture
def sweep(awkward_dir: Path) -> Sweep:
    """A counting workflow in an awkward folder (call ``sweep.write(cfgs, ...)`` first)."""
    return make_sweep(awkward_dir)
