"""Reading an Ollama model store (``$OLLAMA_MODELS``, else ``~/.ollama/models``), the way Ollama lays it out.

Layout (Ollama's ``manifest/paths.go``, ``types/model/name.go``)::

    <models>/
      manifests/<host>/<namespace>/<model>/<tag>     JSON, no extension; e.g.
                                                     manifests/registry.ollama.ai/library/all-minilm/latest
      blobs/sha256-<hex>                             content-addressed layers (older Ollama: sha256:<hex>)

A manifest is a Docker v2 image manifest::

    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:..", "size": N},
     "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:..", "size": N},
                {"mediaType": "application/vnd.ollama.image.license", ...}, ...]}

The ``application/vnd.ollama.image.model`` layer is the GGUF file. A model is an embedding model when
that GGUF holds ``<architecture>.pooling_type`` (Ollama's ``Capabilities``), decided elsewhere.
Names: ``[host/][namespace/]model[:tag]``, host ``registry.ollama.ai``, namespace ``library`` and tag
``latest`` by default, matched case-insensitively.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embedserve.errors import InputFileError, InvalidModelName, ModelNotFound, StoreError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class OllamaName:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> OllamaName:
        raw = text.strip()
        slash, colon = raw.rfind("/"), raw.rfind(":")
        base, tag = (raw[:colon], raw[colon + 1 :]) if colon > slash else (raw, DEFAULT_TAG)
        parts = base.split("/")
        if not raw or not tag or len(parts) > 3 or not all(parts):
            raise InvalidModelName(text, "expected [host/][namespace/]model[:tag]")
        parts = [DEFAULT_HOST, DEFAULT_NAMESPACE][: 3 - len(parts)] + parts
        return cls(parts[0], parts[1], parts[2], tag)

    @property
    def display(self) -> str:
        """Ollama's shortest spelling: ``all-minilm:latest``, ``ns/model:tag``, ``host/ns/model:tag``."""
        if self.host.lower() == DEFAULT_HOST:
            if self.namespace.lower() == DEFAULT_NAMESPACE:
                return f"{self.model}:{self.tag}"
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # hex
    size: int


@dataclass(frozen=True)
class OllamaModel:
    name: OllamaName
    manifest: Path
    layers: tuple[Layer, ...]

    @property
    def model_layer(self) -> Layer:
        for layer in self.layers:
            if layer.media_type == MODEL_MEDIA_TYPE:
                return layer
        raise StoreError(f"Ollama model '{self.name.display}' has no {MODEL_MEDIA_TYPE} layer")


class OllamaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    def check(self) -> None:
        if not self.root.is_dir():
            raise InputFileError(
                f"no Ollama model store at {self.root} (set OLLAMA_MODELS or pass --models DIR)"
            )
        if not self.manifests_dir.is_dir():
            raise InputFileError(f"{self.root} is not an Ollama model store: it has no manifests/")

    def models(self) -> list[OllamaModel]:
        """Every model in the store, sorted by name; unreadable manifests raise."""
        self.check()
        out = []
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            if path.is_file() and not path.name.startswith("."):
                host, ns, model, tag = path.relative_to(self.manifests_dir).parts
                out.append(self._read(OllamaName(host, ns, model, tag), path))
        return out

    def find(self, text: str) -> OllamaModel:
        self.check()
        wanted = OllamaName.parse(text)
        path = self.manifests_dir / wanted.host / wanted.namespace / wanted.model / wanted.tag
        if path.is_file():
            return self._read(wanted, path)
        key = str(wanted).lower()
        for model in self.models():
            if str(model.name).lower() == key:
                return model
        names = ", ".join(m.name.display for m in self.models()) or "none"
        raise ModelNotFound(
            f"model '{wanted.display}' is not in the Ollama store {self.root} (it has: {names})",
            name=wanted.display,
        )

    def _read(self, name: OllamaName, path: Path) -> OllamaModel:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            layers = []
            for item in data["layers"]:
                found = _DIGEST.fullmatch(str(item["digest"]))
                if not found:
                    raise ValueError(f"bad layer digest {item['digest']!r}")
                layers.append(Layer(str(item["mediaType"]), found.group(1).lower(), int(item["size"])))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            raise StoreError(f"Ollama manifest {path} is unreadable ({err})") from None
        return OllamaModel(name, path, tuple(layers))

    def blob(self, layer: Layer) -> Path:
        for sep in ("-", ":"):
            path = self.blobs_dir / f"sha256{sep}{layer.digest}"
            if path.is_file():
                return path
        raise StoreError(
            f"blob sha256-{layer.digest} is missing from {self.blobs_dir} "
            "(re-pull the model with ollama)"
        )

    def verified_blob(self, layer: Layer, on_bytes: Callable[[int, int], None] | None = None) -> Path:
        """The layer's blob, after checking its size and sha256 against the manifest."""
        path = self.blob(layer)
        size = path.stat().st_size
        if size != layer.size:
            raise StoreError(
                f"blob sha256-{layer.digest[:12]} is {size} bytes, the manifest says {layer.size}"
            )
        h = hashlib.sha256()
        done = 0
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                done += len(chunk)
                if on_bytes is not None:
                    on_bytes(done, size)
        if h.hexdigest() != layer.digest:
            raise StoreError(
                f"blob {path.name[:19]} is corrupt: its sha256 is {h.hexdigest()[:12]}, "
                f"the manifest says {layer.digest[:12]}"
            )
        return path
