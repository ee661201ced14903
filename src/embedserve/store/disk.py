"""The installed models on disk, under ``Settings.home`` (``$EMBEDSERVE_HOME``, default
``~/.embedserve``).

Layout::

    <home>/
      models/
        blobs/
          sha256-<tree digest>/          one immutable sentence-transformers folder
            config.json                  (the tree digest is the sha256 over the sorted
            tokenizer.json                "path\\0sha256\\n" lines of its files, so the same
            model.safetensors             name always means the same bytes; a model's ID is
            modules.json                  the sha256 of its model.safetensors)
            1_Pooling/config.json
            sentence_bert_config.json, tokenizer_config.json, special_tokens_map.json,
            vocab.txt, config_sentence_transformers.json   (when the source has them)
            graphs/                      ONNX graphs the engine builds on first load (fp32, int8);
                                         a cache, not covered by the digests
        manifests/
          <model>/<tag>.json             e.g. manifests/all-minilm/latest.json; a namespaced name
                                         ns/model:tag lives at manifests/ns/model/tag.json
      tmp/
        pull-<pid>-<random>/             staging; renamed into blobs/ only once complete and
                                         verified, removed on failure, and removed by the next
                                         pull if its process died

A manifest (JSON, :mod:`embedserve.store.manifest`) names the blob and says how to use it.

Names that share weights (``all-minilm:latest``, ``all-minilm:22m``, ``all-minilm:22m-int8``, a
``cp`` copy) share one blob; ``rm`` deletes a manifest and then every blob no manifest names.
Manifests are written to ``tmp/`` and moved into place with ``os.replace``, blobs with
``os.rename``: a reader never sees half a model. Nothing here touches the network: :mod:`.pull`
fetches into staging, then calls :meth:`DiskStore.install`.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedserve.errors import CorruptModel, ModelNotFound
from embedserve.store import manifest
from embedserve.store.files import remove_tree, sha256_file, tree_digest
from embedserve.store.folder import WEIGHTS, FolderInfo
from embedserve.store.manifest import InstalledModel
from embedserve.store.names import parse_name
from embedserve.store.registry import DEFAULT_REGISTRY, ModelCard, Registry

_BLOB_GRACE_S = 120.0  # a blob this fresh may belong to a pull that is writing its manifest


class DiskStore:
    """The installed models under ``home``: read, check, install, alias, copy, remove."""

    def __init__(self, home: Path, *, registry: Registry | None = None) -> None:
        self.home = Path(home).expanduser()
        self.registry = registry or DEFAULT_REGISTRY

    # -- paths -------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def blobs_dir(self) -> Path:
        return self.models_dir / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.models_dir / "manifests"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    def manifest_path(self, name: str) -> Path:
        parsed = parse_name(name)
        return self.manifests_dir.joinpath(*parsed.path, f"{parsed.tag}.json")

    # -- names -------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """Canonical ``name:tag`` (lower case, ``latest`` by default); :class:`InvalidModelName`."""
        return str(parse_name(name))

    def _installed_names(self) -> list[str]:
        return [name for name, _ in self._manifests()]

    def repair_hint(self, name: str, source: str = "") -> str:
        if source.startswith("ollama "):
            return f"import it again: embedserve import-ollama {source.split()[1]}"
        if source.startswith("folder ") and self.registry.lookup(name) is None:
            return f"recreate it: embedserve create {name} --from {source[len('folder ') :]}"
        if self.registry.lookup(name) is not None:
            return f"re-pull it: embedserve pull {name}"
        return f"remove it (embedserve rm {name}) and pull or create it again"

    # -- reading -----------------------------------------------------------------------------
    def _manifests(self) -> Iterator[tuple[str, Path]]:
        if not self.manifests_dir.is_dir():
            return
        for path in sorted(self.manifests_dir.rglob("*.json")):
            rel = path.relative_to(self.manifests_dir)
            parts = rel.parts
            name = "/".join(parts[:-1]) + ":" + parts[-1][: -len(".json")]
            yield name, path

    def _read_manifest(self, name: str, path: Path) -> dict[str, Any]:
        try:
            return manifest.check(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise CorruptModel(
                f"model '{name}' is corrupt: its manifest {path} is unreadable ({err}); "
                + self.repair_hint(name)
            ) from None

    def _model(self, name: str, data: dict[str, Any]) -> InstalledModel:
        card = self.registry.lookup(data["card"]) if data.get("card") else None
        return manifest.to_model(name, data, self.blobs_dir / data["blob"], card)

    def _check(self, model: InstalledModel, data: dict[str, Any]) -> None:
        """Cheap check: every file is there with its recorded size (no hashing)."""
        for rel, meta in data["files"].items():
            path = model.folder / rel
            try:
                size = path.stat().st_size
            except OSError:
                raise CorruptModel(
                    f"model '{model.name}' is corrupt: {rel} is missing from {model.folder}; "
                    + self.repair_hint(model.name, model.source)
                ) from None
            if size != int(meta["size"]):
                raise CorruptModel(
                    f"model '{model.name}' is corrupt: {rel} is {size} bytes, expected {meta['size']}; "
                    + self.repair_hint(model.name, model.source)
                )

    def find(self, name: str) -> InstalledModel | None:
        """The installed model, None if not installed; :class:`CorruptModel` if broken."""
        canon = self.resolve(name)
        path = self.manifest_path(canon)
        if not path.is_file():
            return None
        data = self._read_manifest(canon, path)
        model = self._model(canon, data)
        self._check(model, data)
        return model

    def not_installed(self, name: str) -> ModelNotFound:
        canon = self.resolve(name)
        if self.registry.lookup(canon) is not None:
            command = f"embedserve pull {canon}"
            return ModelNotFound(
                f"model '{canon}' is not installed; run: {command}",
                name=canon,
                pull_command=command,
            )
        msg = self.registry.unknown_message(canon, also=self._installed_names())
        return ModelNotFound(msg, name=canon)

    def get(self, name: str) -> InstalledModel:
        model = self.find(name)
        if model is None:
            raise self.not_installed(name)
        return model

    def list(self) -> list[InstalledModel]:
        """Installed models, newest first (unreadable manifests are left out)."""
        out = []
        for name, path in self._manifests():
            try:
                data = self._read_manifest(name, path)
                out.append(self._model(name, data))
            except (CorruptModel, KeyError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda m: m.modified_at, reverse=True)

    def verify(self, model: InstalledModel) -> None:
        """Full check: every file's sha256, and the weights' against ``model.digest``."""
        data = self._read_manifest(model.name, self.manifest_path(model.name))
        self._check(model, data)
        hint = self.repair_hint(model.name, model.source)
        for rel, meta in sorted(data["files"].items()):
            got = sha256_file(model.folder / rel)
            expected = model.digest if rel == WEIGHTS else meta["sha256"]
            if got != expected:
                raise CorruptModel(
                    f"model '{model.name}' is corrupt: sha256 mismatch for {rel} "
                    f"(expected {expected[:12]}, got {got[:12]}); {hint}"
                )

    # -- writing -----------------------------------------------------------------------------
    def staging(self, kind: str = "pull") -> Path:
        """A fresh staging folder in ``tmp/``; stale ones of dead processes are removed first."""
        self.clean_stale_staging()
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = self.tmp_dir / f"{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def clean_stale_staging(self) -> None:
        if not self.tmp_dir.is_dir():
            return
        for entry in self.tmp_dir.iterdir():
            try:
                pid = int(entry.name.split("-")[1])
            except (IndexError, ValueError):
                pid = -1
            if pid != os.getpid() and not _alive(pid):
                if entry.is_dir():
                    remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)

    def install(
        self,
        staged: Path,
        files: dict[str, dict[str, Any]],
        info: FolderInfo,
        *,
        name: str,
        quantization: str,
        source: str,
        card: ModelCard | None,
        training: dict[str, Any] | None = None,
    ) -> InstalledModel:
        """Move a complete, verified staged folder into ``blobs/`` and write its manifest."""
        blob = "sha256-" + tree_digest(files)
        target = self.blobs_dir / blob
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        if target.exists() and not self._blob_intact(target, files):
            trash = self.staging("trash")
            os.rename(target, trash / "old")
            remove_tree(trash)
        if not target.exists():
            try:
                os.rename(staged, target)
            except OSError:
                if not (target.exists() and self._blob_intact(target, files)):
                    raise
        remove_tree(staged)
        card_name = None
        if card is not None:
            card_name = name if self.registry.lookup(name) is card else card.names[0]
        data = manifest.new(
            files, info, name=name, blob=blob, quantization=quantization, source=source,
            card=card, card_name=card_name, training=training,
        )
        self._write_manifest(name, data)
        return self.get(name)

    def _blob_intact(self, folder: Path, files: dict[str, dict[str, Any]]) -> bool:
        for rel, meta in files.items():
            path = folder / rel
            if not path.is_file() or path.stat().st_size != meta["size"]:
                return False
            if sha256_file(path) != meta["sha256"]:
                return False
        return True

    def _write_manifest(self, name: str, data: dict[str, Any]) -> None:
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"manifest-{os.getpid()}-{secrets.token_hex(4)}.json"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def remove(self, name: str) -> None:
        canon = self.resolve(name)
        path = self.manifest_path(canon)
        if not path.is_file():
            installed = self._installed_names()
            close = self.registry.suggest(canon, also=installed)
            close = [n for n in close if n in installed]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelNotFound(f"model '{canon}' is not installed{hint}", name=canon)
        path.unlink()
        parent = path.parent
        while parent != self.manifests_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
        self.collect_garbage()

    def collect_garbage(self) -> builtins.list[str]:
        """Remove blobs that no manifest names; returns their names."""
        if not self.blobs_dir.is_dir():
            return []
        referenced = set()
        for name, path in self._manifests():
            try:
                referenced.add(json.loads(path.read_text(encoding="utf-8"))["blob"])
            except (OSError, ValueError, KeyError, TypeError):
                return []  # an unreadable manifest might name any blob: keep them all
        removed = []
        now = time.time()
        busy = self._staging_in_use()
        for blob in self.blobs_dir.iterdir():
            if blob.name in referenced:
                continue
            if busy and now - blob.lstat().st_ctime < _BLOB_GRACE_S:
                continue  # may be a pull between moving its blob in and writing its manifest
            remove_tree(blob)
            removed.append(blob.name)
        return removed

    def _staging_in_use(self) -> bool:
        if not self.tmp_dir.is_dir():
            return False
        for entry in self.tmp_dir.iterdir():
            parts = entry.name.split("-")
            live = len(parts) > 2 and parts[0] in ("pull", "create") and parts[1].isdigit()
            if live and _alive(int(parts[1])):
                return True
        return False

    def copy(self, source: str, destination: str) -> InstalledModel:
        model = self.get(source)
        dest = self.resolve(destination)
        data = self._read_manifest(model.name, self.manifest_path(model.name))
        if dest == model.name:
            return model
        data = dict(data, name=dest, created_at=manifest.now())
        self._write_manifest(dest, data)
        return self.get(dest)

    def write_alias(
        self, model: InstalledModel, name: str, *, quantization: str, source: str
    ) -> InstalledModel:
        """A new manifest for an installed blob (``create --from MODEL``, pulls that reuse a blob)."""
        data = self._read_manifest(model.name, self.manifest_path(model.name))
        card = self.registry.lookup(name)
        data = dict(
            data,
            name=name,
            quantization=quantization,
            source=source,
            card=name if card is not None else data.get("card"),
            created_at=manifest.now(),
        )
        self._write_manifest(name, data)
        return self.get(name)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
