"""The fake-repository corpus (tests/shapes) on a real Ray cluster.

Ray's workers are processes of the cluster, started before the sweep and shared between
sweeps: each run imports the sweep's copy of the code there, under the user's own module
names and with the script's ``sys.argv``. (``user_site`` is left out: its library is
installed only for its own interpreter, not on the cluster, as a library must be.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import read_jsonl
from tests.services import require_service
from tests.services.ray_cluster import RayCluster, ray_available
from tests.shapes import ALL, env_for

require_service(ray_available(), module_level=True)

ON_RAY = ["registry", "module_run", "script_classes", "src_layout", "argparse_script"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with RayCluster(auth=False) as c:
        yield c


@pytest.mark.parametrize("name", ON_RAY)
def test_each_shape_runs_on_ray_as_python_runs_it(cluster: RayCluster, tmp_path: Path,
                                                  name: str) -> None:
    repo = ALL[name](tmp_path)
    env = {**env_for(repo), **cluster.client_env()}
    proc = subprocess.run(repo.command("ray"), cwd=repo.cwd, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    errors = "\n".join(p.read_text() for p in repo.out.rglob("*.error"))
    assert proc.returncode == 0, proc.stderr + errors
    lines = read_jsonl(repo.out / "results.jsonl")
    assert {line["experiment_id"]: line["scores"]["mean_y"] for line in lines} == \
        repo.expected, errors
