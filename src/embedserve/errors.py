"""Every exception embedserve raises on purpose lives here.

The tree::

    EmbedServeError                  base; ``str(err)`` is always a one-line, user-facing message
    ├── UserError                    the caller asked for something wrong (CLI exit 1, HTTP 4xx)
    │   ├── InvalidModelName         a name that breaks the naming rules          (HTTP 400)
    │   ├── ModelNotFound            unknown or not-installed model / tag         (HTTP 404)
    │   ├── InvalidInput             wrong type or value in a request or call     (HTTP 400)
    │   │   ├── InputTooLong         truncate=False and a text exceeds the window (HTTP 400)
    │   │   └── TooManyInputs        more inputs than the configured limit        (HTTP 400)
    │   ├── PayloadTooLarge          request body over the limit                  (HTTP 413)
    │   ├── CollectionError          bad collection operation (model mismatch, bad filter...)  (HTTP 400)
    │   │   └── CollectionNotFound   no such collection                           (HTTP 404)
    │   ├── InputFileError           unreadable / non-UTF-8 / malformed input file
    │   └── AuthError                a key, plan or usage-limit problem (``auth/``)
    │       ├── Unauthorized         missing, unknown or revoked API key           (HTTP 401)
    │       ├── Forbidden            a model or route the key may not use          (HTTP 403)
    │       └── LimitExceeded        a plan limit is reached; ``retry_after`` s     (HTTP 429)
    ├── StoreError                   the on-disk store is not as it should be
    │   ├── CorruptModel             a hash mismatch or missing file in an installed model
    │   └── PullError                every source of a pull failed (message names each one)
    ├── EngineError                  inference failed (ONNX Runtime error, NaN output)
    ├── TrainingError                fine-tuning failed (extra missing, loss diverged)
    ├── Overloaded                   queue full                                   (HTTP 503)
    ├── UpstreamError                an LLM upstream (``ask``) is unreachable or failed (HTTP 502)
    └── CacheError                   the embedding cache is misconfigured (bad EMBEDSERVE_REDIS_URL,
                                     no redis client); raised at start-up, never during a request

Fronts map this tree in exactly one place each: the server in ``server/errors.py``, the CLI in
``cli/__init__.py``.
"""

from __future__ import annotations


class EmbedServeError(Exception):
    """Base class. The message is one line a user can act on."""


class UserError(EmbedServeError):
    """The request or call itself is wrong."""


class InvalidModelName(UserError):
    def __init__(self, name: str, reason: str = "") -> None:
        self.name = name
        msg = f"invalid model name {name!r}"
        super().__init__(f"{msg}: {reason}" if reason else msg)


class ModelNotFound(UserError):
    """Unknown model or tag, or known but not installed (then ``pull_command`` says how to get it)."""

    def __init__(self, message: str, *, name: str = "", pull_command: str | None = None) -> None:
        self.name = name
        self.pull_command = pull_command
        super().__init__(message)


class InvalidInput(UserError):
    pass


class InputTooLong(InvalidInput):
    def __init__(self, index: int, tokens: int, limit: int) -> None:
        self.index = index
        self.tokens = tokens
        self.limit = limit
        super().__init__(
            f"input {index} is {tokens} tokens long, over the model's limit of {limit} "
            "(pass truncate=True to cut it)"
        )


class TooManyInputs(InvalidInput):
    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(f"too many inputs: {count} in one request, the limit is {limit}")


class PayloadTooLarge(UserError):
    pass


class CollectionError(UserError):
    pass


class CollectionNotFound(CollectionError):
    pass


class InputFileError(UserError):
    pass


class AuthError(UserError):
    pass


class Unauthorized(AuthError):
    pass


class Forbidden(AuthError):
    pass


class LimitExceeded(AuthError):
    """``limit`` names the limit (``concurrent_models``, ``session``, ``weekly``, ``rpm``)."""

    def __init__(self, message: str, *, limit: str, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(message)


class StoreError(EmbedServeError):
    pass


class CorruptModel(StoreError):
    pass


class PullError(StoreError):
    pass


class EngineError(EmbedServeError):
    pass


class TrainingError(EmbedServeError):
    pass


class Overloaded(EmbedServeError):
    pass


class UpstreamError(EmbedServeError):
    pass


class CacheError(EmbedServeError):
    pass


__all__ = [
    "AuthError",
    "CacheError",
    "CollectionError",
    "CollectionNotFound",
    "CorruptModel",
    "EmbedServeError",
    "EngineError",
    "Forbidden",
    "InputFileError",
    "InputTooLong",
    "InvalidInput",
    "InvalidModelName",
    "LimitExceeded",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PullError",
    "StoreError",
    "TooManyInputs",
    "TrainingError",
    "Unauthorized",
    "UpstreamError",
    "UserError",
]
