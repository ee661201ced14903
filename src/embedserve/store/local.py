""":class:`ModelStore`, the store's front door: what the CLI, the server, the service and ``train`` call.

It is :class:`~embedserve.store.disk.DiskStore` (the installed models on disk: find, verify,
install, alias, copy, remove) plus the two ways a model gets in: :meth:`ModelStore.pull` (from a
registry card's sources, :mod:`.pull`, the only path to the network) and :meth:`ModelStore.create`
(from a folder or an installed model, :mod:`.create`). The layout on disk: :mod:`.disk`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embedserve.store.create import create_model
from embedserve.store.disk import DiskStore
from embedserve.store.manifest import InstalledModel
from embedserve.store.progress import ProgressCallback
from embedserve.store.pull import pull_model
from embedserve.store.registry import Registry
from embedserve.store.sources import Network

if TYPE_CHECKING:
    import httpx

    from embedserve.config import Settings

__all__ = ["InstalledModel", "ModelStore"]


class ModelStore(DiskStore):
    def __init__(
        self,
        home: Path,
        *,
        offline: bool = False,
        registry: Registry | None = None,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
    ) -> None:
        super().__init__(home, registry=registry)
        self.offline = offline
        self.transport = transport  # tests pass an httpx.MockTransport
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        return cls(settings.home, offline=settings.offline)

    def pull(
        self, name: str, *, from_dir: Path | None = None, progress: ProgressCallback | None = None
    ) -> InstalledModel:
        network = Network(self.offline, self.transport, self.connect_timeout, self.read_timeout)
        return pull_model(self, name, network=network, from_dir=from_dir, progress=progress)

    def create(
        self,
        name: str,
        *,
        source: Path | str,
        quantize: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> InstalledModel:
        return create_model(self, name, source=source, quantize=quantize, progress=progress)
