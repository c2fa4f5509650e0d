"""Fixtures shared by the engine tests: the local backends, awkward folders, a counting sweep.

The helpers these fixtures use (running ``dagrun``, writing workflows, reading results) live
in ``tests/helpers.py``; test modules import them from there, never from this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import AWKWARD_NAME, LOCAL_BACKENDS, Sweep, make_sweep

# Test modules that start a service (a Ray head, sshd, a Slurm cluster, Chromium) or crash
# sweeps on purpose many times over: `make test-fast` leaves them out (-m "not service and
# not chaos"); `make test` and CI run everything.
SERVICE_MODULES = frozenset({
    "test_ray_backend", "test_ray_faults", "test_ray_cluster_fixture", "test_ssh_backend",
    "test_ssh_faults", "test_ssh_fixture", "test_slurm_backend", "test_report_browser",
    "test_shapes_services"})
SERVICE_BACKENDS = ("ray", "ssh", "slurm")  # parameters of the contract suite
CHAOS_MODULES = frozenset({"test_chaos", "test_freeze_chaos", "test_freezes"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "service: starts a service (Ray, sshd, Slurm, Chromium)")
    config.addinivalue_line("markers", "chaos: kills sweeps at random points, many times")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "").rpartition(".")[2]
        params = getattr(getattr(item, "callspec", None), "params", {})
        if module in SERVICE_MODULES or any(
                value in SERVICE_BACKENDS for value in params.values() if isinstance(value, str)):
            item.add_marker(pytest.mark.service)
        if module in CHAOS_MODULES:
            item.add_marker(pytest.mark.chaos)


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
