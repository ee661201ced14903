"""Model names, the way Ollama spells them: ``[host/][namespace/]model[:tag]``.

* The tag is split off at the last ``:`` that comes after the last ``/`` (so ``host:8080/m`` has no
  tag), and defaults to ``latest``.
* Every ``/``-separated part and the tag start with ``[A-Za-z0-9_]`` and may then hold letters,
  digits, ``_``, ``-`` and ``.`` (at most 80 characters; a host part may also carry ``:port``).
* Matching is case-insensitive: the canonical form is lower case, which is also the on-disk form.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from embedserve.errors import InvalidModelName

DEFAULT_TAG = "latest"
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}(:[0-9]{1,5})?")


@dataclass(frozen=True)
class ModelName:
    """A parsed, canonical (lower-case) model name."""

    path: tuple[str, ...]  # ("all-minilm",) or ("host", "ns", "model")
    tag: str

    @property
    def model(self) -> str:
        """The name without its tag, e.g. ``all-minilm``."""
        return "/".join(self.path)

    def __str__(self) -> str:
        return f"{self.model}:{self.tag}"


def parse_name(name: str) -> ModelName:
    """Parse and validate ``name``; raise :class:`InvalidModelName` saying what is wrong."""
    if not isinstance(name, str):
        raise InvalidModelName(repr(name), "a model name must be a string")
    raw = name.strip()
    if not raw:
        raise InvalidModelName(name, "the name is empty")
    slash = raw.rfind("/")
    colon = raw.rfind(":")
    if colon > slash:
        base, tag = raw[:colon], raw[colon + 1 :]
        if not tag:
            raise InvalidModelName(name, "the tag after ':' is empty")
    else:
        base, tag = raw, DEFAULT_TAG
    parts = base.split("/")
    if len(parts) > 3:
        raise InvalidModelName(name, "at most host/namespace/model before the tag")
    for i, part in enumerate(parts):
        if not part:
            raise InvalidModelName(name, "empty part between '/'")
        pattern = _HOST if (i == 0 and len(parts) == 3) else _PART
        if not pattern.fullmatch(part):
            raise InvalidModelName(
                name,
                f"{part!r} must start with a letter, digit or '_' and hold only letters, digits, "
                "'_', '-' and '.' (80 characters at most)",
            )
    if not _PART.fullmatch(tag):
        raise InvalidModelName(
            name,
            f"tag {tag!r} must start with a letter, digit or '_' and hold only letters, digits, "
            "'_', '-' and '.' (80 characters at most)",
        )
    return ModelName(tuple(p.lower() for p in parts), tag.lower())


@functools.lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    return str(parse_name(name))


def canonical(name: str) -> str:
    """``"All-MiniLM"`` -> ``"all-minilm:latest"``; raises :class:`InvalidModelName`.

    Memoised (every embed request asks it twice, with one of a few names); an invalid name is not
    cached, so it raises each time."""
    if not isinstance(name, str):
        return str(parse_name(name))  # raises: a model name must be a string
    return _canonical(name)


def is_valid(name: str) -> bool:
    try:
        parse_name(name)
    except InvalidModelName:
        return False
    return True
