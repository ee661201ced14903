"""What crosses the wire between ingress and replicas: plain tuples, never exception objects.

embedserve's exceptions take keyword arguments (``InputTooLong(index, tokens, limit)``), which
pickle does not round-trip, and an HTTP error must keep its exact status and text. So a replica
answers ``("ok", ...)`` or one of the error tuples below, and the ingress turns an error back into
the :class:`~embedserve.server.errors.HTTPError` single-process mode would have answered.
"""

from __future__ import annotations

from typing import Any

from embedserve.errors import ModelNotFound
from embedserve.server.errors import HTTPError, status_and_message

Reply = tuple[Any, ...]

REPLICA_LOST = "a model replica stopped while serving this request; please try again"


def error_reply(exc: BaseException) -> Reply:
    """``("missing", message)`` for a model that is not installed, else ``("error", status, text)``."""
    if isinstance(exc, ModelNotFound):
        return ("missing", str(exc))
    status, message = status_and_message(exc)
    return ("error", status, message)


def raise_error(reply: Reply) -> None:
    """Re-raise an error reply on the ingress side (``missing`` as ModelNotFound, for the routes'
    own 404 texts)."""
    if reply[0] == "missing":
        raise ModelNotFound(reply[1])
    if reply[0] == "error":
        raise HTTPError(int(reply[1]), str(reply[2]))
