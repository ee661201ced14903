"""Local -> cloud offload: ``serve --remote URL`` forwards ``NAME-cloud`` / ``NAME:cloud`` models."""

from __future__ import annotations

from starlette.middleware import Middleware

from embedserve.config import Settings
from embedserve.remote.names import cloud_name, remote_name


def middleware(settings: Settings) -> list[Middleware]:
    if not settings.remote_url:
        return []
    from embedserve.remote.offload import OffloadMiddleware

    return [
        Middleware(
            OffloadMiddleware,
            remote=settings.remote_url,
            api_key=settings.api_key,
            max_body_bytes=settings.max_body_bytes,
        )
    ]


__all__ = ["cloud_name", "middleware", "remote_name"]
