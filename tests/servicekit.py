"""What a test does when a real service it needs (redis-server, PostgreSQL, Ray, Chromium) is missing.

On a developer's machine it skips, naming what to install; under ``CI=true`` it fails, so CI can
never pass by skipping the suites that test real parts.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip (or, in CI, fail) unless ``available``; ``what`` says what is missing and how to get it."""
    if available:
        return
    if in_ci():
        pytest.fail(f"CI needs {what}", pytrace=False)
    pytest.skip(f"needs {what}")
