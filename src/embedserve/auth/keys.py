"""API keys: generation, the stored salted hash, and constant-time verification.

A key is ``esk_`` + 43 URL-safe characters (256 random bits). Its first :data:`PREFIX_LEN`
characters are its *prefix*: stored in clear, shown by ``keys list`` and used to find the record,
so verifying a key costs one hash, never a scan. What is stored is ``hashlib.scrypt`` of the whole
key with a per-key random salt (n=2^14, r=8, p=1: ~16 MiB and tens of milliseconds per hash, the
interactive-login parameters of RFC 7914), never the key; hashes compare with
``hmac.compare_digest``. The server keeps verified keys in memory under an HMAC with a per-process
secret, so the slow hash runs once per key per process, not once per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

KEY_PREFIX = "esk_"
PREFIX_LEN = 12  # "esk_" + 8 random characters: 48 bits, enough to make prefix clashes rare
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: never the key itself."""

    id: str
    name: str
    plan: str
    prefix: str
    hash: str = field(repr=False)
    models: tuple[str, ...] = ()  # glob patterns over canonical names; empty: every model
    created_at: float = 0.0
    last_used_at: float | None = None
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) > PREFIX_LEN


def key_prefix(key: str) -> str:
    return key[:PREFIX_LEN]


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        key.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_key(key: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): the only form of a key that is ever stored."""
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(_scrypt(key, salt, _N, _R, _P))}"


def verify_key(key: str, stored: str) -> bool:
    """True if ``key`` hashes to ``stored``; the digests compare in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(key, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class VerifiedCache:
    """Keys already verified in this process, under HMAC-SHA256 with a per-process secret.

    Holding the HMAC (not the key) means a memory dump or a log of this table shows nothing that
    authenticates anywhere else. Bounded: a flood of distinct valid keys just evicts the oldest.
    """

    def __init__(self, limit: int = 65536) -> None:
        self._secret = secrets.token_bytes(32)
        self._ids: dict[bytes, str] = {}
        self._limit = limit

    def tag(self, key: str) -> bytes:
        return hmac.new(self._secret, key.encode("utf-8"), hashlib.sha256).digest()

    def get(self, key: str) -> str | None:
        return self._ids.get(self.tag(key))

    def put(self, key: str, key_id: str) -> None:
        if len(self._ids) >= self._limit:
            self._ids.pop(next(iter(self._ids)))
        self._ids[self.tag(key)] = key_id

    def forget(self, key_id: str) -> None:
        for tag in [t for t, i in self._ids.items() if i == key_id]:
            del self._ids[tag]
