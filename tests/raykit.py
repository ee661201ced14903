"""Ray test helpers: a multi-node cluster on this machine, and a fake store every process shares.

``start_cluster`` starts ``ray.cluster_utils.Cluster``: a head and one more node (separate raylets
and object stores, one CPU each, small object stores, no dashboard), so Serve's two replicas land
on two nodes. Workers find the test helpers through PYTHONPATH (tests/), set before the nodes start.

``FileFakeStore`` is serverkit's FakeStore kept in a JSON file: the ingress (which serves
``/api/pull``, ``/api/copy``, ``/api/delete``) and the replicas (whose FakeLoader loads models) are
different processes, and must see one store, as real replicas see one models directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
HELPERS = (str(TESTS), str(TESTS / "server"))  # raykit, serverkit: on the workers' path too
sys.path[:0] = [p for p in HELPERS if p not in sys.path]

from serverkit import FakeLoader, FakeStore  # noqa: E402

from embedserve.config import Settings  # noqa: E402
OBJECT_STORE_BYTES = 200 * 1024 * 1024


class FileFakeStore(FakeStore):
    def __init__(self, path: str, installed: tuple[str, ...] = (), catalogue: tuple[str, ...] = ()):
        self.path = Path(path)
        if not self.path.exists():
            super().__init__(installed=installed, catalogue=catalogue)
            self._save()
        else:
            super().__init__(installed=(), catalogue=())
            self._load()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self) -> None:
        data = {"installed": sorted(self.models), "catalogue": sorted(self.catalogue)}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def _load(self) -> None:
        data = json.loads(self.path.read_text())
        self.catalogue = set(data["catalogue"])
        self.models = {}
        for name in data["installed"]:
            self._install(name)

    def _call(self, method: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if getattr(self, "_inside", False):  # FakeStore's methods call each other
            return method(*args, **kw)
        with self._locked():
            self._inside = True
            self._load()
            try:
                return method(*args, **kw)
            finally:
                self._save()
                self._inside = False

    def find(self, name: str) -> Any:
        return self._call(super().find, name)

    def get(self, name: str) -> Any:
        return self._call(super().get, name)

    def list(self) -> Any:
        return self._call(super().list)

    def remove(self, name: str) -> None:
        self._call(super().remove, name)

    def copy(self, source: str, destination: str) -> Any:
        return self._call(super().copy, source, destination)

    def pull(self, name: str, *, progress: Any = None) -> Any:
        return self._call(super().pull, name, progress=progress)


class StoreFactory:
    """Picklable ``settings -> store`` for the ingress."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, settings: Settings) -> FileFakeStore:
        return FileFakeStore(self.path)


class LoaderFactory:
    """Picklable ``settings -> loader`` for the replicas: FakeLoader over the shared store."""

    def __init__(self, path: str, **engine_kw: Any) -> None:
        self.path = path
        self.engine_kw = engine_kw

    def __call__(self, settings: Settings) -> FakeLoader:
        return FakeLoader(FileFakeStore(self.path), **self.engine_kw)


def start_cluster(temp_dir: Path, cpus_per_node: int = 1, nodes: int = 2) -> Any:
    """A head plus ``nodes - 1`` nodes on this machine; the driver connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    paths = [*HELPERS, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    (temp_dir / "ray").mkdir(parents=True, exist_ok=True)
    os.environ["RAY_TMPDIR"] = str(temp_dir)  # Ray's address file and sessions stay in the test's dir
    node_args = {
        "num_cpus": cpus_per_node,
        "object_store_memory": OBJECT_STORE_BYTES,
    }
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**node_args, "include_dashboard": False, "temp_dir": str(temp_dir / "ray")},
    )
    for _ in range(nodes - 1):
        cluster.add_node(**node_args)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    return cluster


def has_ray() -> bool:
    try:
        import ray  # noqa: F401
        import ray.serve  # noqa: F401
    except ImportError:
        return False
    return sys.version_info >= (3, 10)
