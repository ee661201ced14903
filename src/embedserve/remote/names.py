"""Cloud model names, as Ollama spells them: the local name of remote ``NAME:TAG`` is
``NAME:TAG-cloud`` (``NAME:cloud`` for ``latest``); ``NAME-cloud`` means ``NAME:latest`` too."""

from __future__ import annotations

from embedserve.errors import InvalidModelName
from embedserve.store.names import canonical


def remote_name(name: str) -> str | None:
    """The remote model a local name refers to, or ``None`` if it is not a cloud name."""
    try:
        canon = canonical(name)
    except InvalidModelName:
        return None
    base, _, tag = canon.rpartition(":")
    if tag == "cloud":
        return f"{base}:latest"
    if tag.endswith("-cloud"):
        return f"{base}:{tag[: -len('-cloud')]}"
    if tag == "latest" and base.endswith("-cloud") and len(base) > len("-cloud"):
        return f"{base[: -len('-cloud')]}:latest"
    return None


def cloud_name(remote: str) -> str:
    """The local name listed for remote model ``remote`` (canonical ``NAME:TAG``)."""
    base, _, tag = canonical(remote).rpartition(":")
    return f"{base}:cloud" if tag == "latest" else f"{base}:{tag}-cloud"
