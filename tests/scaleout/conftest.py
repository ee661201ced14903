"""The Ray suite's cluster: one per session, two nodes on this machine, stopped at the end.

Every test here is marked ``ray`` (and skips without the ``[ray]`` extra locally, fails under
CI=true). Serve applications are deployed per module on the session's HTTP port and deleted after,
so the CPUs are free for the next module (the corpus jobs need them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from raykit import has_ray, start_cluster
from servicekit import require


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require(has_ray(), "the [ray] extra (pip install -e '.[ray]')")
    import ray

    cluster = start_cluster(tmp_path_factory.mktemp("ray"))
    try:
        yield cluster
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="session")
def serve_port(ray_cluster: Any) -> int:
    from serverkit import free_socket

    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port
