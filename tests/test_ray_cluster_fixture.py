"""The RayCluster test service: a real ``ray start --head``, with and without token auth.

Drivers run in a separate Python process, so this test process never calls ``ray.init``.
Skips when ray is not installed, unless DAGRUN_REQUIRE_SERVICES=1 (then it fails).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.services import require_service
from tests.services.ray_cluster import RayCluster, ray_available

require_service(ray_available(), module_level=True)

DRIVER = textwrap.dedent("""
    import json, sys
    import ray

    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

    @ray.remote(num_cpus=1)
    def square(x):
        return x * x

    out = ray.get([square.remote(i) for i in range(5)], timeout=60)
    print(json.dumps({"result": out, "cpus": ray.cluster_resources().get("CPU")}))
    ray.shutdown()
""")


def run_driver(
    cluster: RayCluster, env_drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run :data:`DRIVER` in a fresh interpreter with the cluster's client environment."""
    env = {**os.environ, **cluster.client_env()}
    for key in env_drop:
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-c", DRIVER, cluster.address],
        env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "token-auth"])
def test_remote_task_from_subprocess_driver(auth: bool) -> None:
    with RayCluster(auth=auth) as cluster:
        assert cluster.address.startswith("127.0.0.1:")
        assert (cluster.token is not None) == auth
        daemons = cluster.raylet_pids()
        names = sorted(psutil.Process(p).name() for p in daemons)
        assert names == ["gcs_server", "raylet"]

        proc = run_driver(cluster)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report == {"result": [0, 1, 4, 9, 16], "cpus": 2.0}

        if auth:
            # Without the token a driver is refused at once (before any network call).
            denied = run_driver(cluster, env_drop=("RAY_AUTH_TOKEN",))
            assert denied.returncode != 0
            assert "AuthenticationError" in denied.stderr

    alive = [p for p in daemons if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert cluster.pids() == []
    assert cluster.temp_dir is not None and not cluster.temp_dir.exists()
