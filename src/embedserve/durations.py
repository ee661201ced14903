"""Ollama's ``keep_alive`` values: JSON numbers are seconds, strings are Go durations.

Negative means forever (``math.inf``); ``0`` means unload after the request.
"""

from __future__ import annotations

import math
import re
from typing import Any

from embedserve.errors import InvalidInput

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Parse Go's ``time.ParseDuration`` syntax into seconds; raise ``InvalidInput`` with Go's text."""
    orig = text
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise InvalidInput(f'time: invalid duration "{orig}"')
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            if re.fullmatch(r"[\d.]+", text[pos:]):
                raise InvalidInput(f'time: missing unit in duration "{orig}"')
            num = re.match(r"[\d.]+", text[pos:])
            if num:
                unit = re.match(r"[^\d.]+", text[pos + num.end() :])
                raise InvalidInput(
                    f'time: unknown unit "{unit.group(0) if unit else ""}" in duration "{orig}"'
                )
            raise InvalidInput(f'time: invalid duration "{orig}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """A request's ``keep_alive``: None (not set), seconds >= 0, or ``math.inf`` (negative = forever)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput("Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_go_duration(value)
    else:
        raise InvalidInput(f"Unsupported type: '{type(value).__name__}'")
    if math.isnan(seconds):
        raise InvalidInput("invalid keep_alive")
    return math.inf if seconds < 0 else seconds


def parse_env_duration(text: str, default: float) -> float:
    """``OLLAMA_KEEP_ALIVE``: a Go duration, or plain integer seconds; negative = forever."""
    text = text.strip()
    try:
        seconds = float(int(text))
    except ValueError:
        try:
            seconds = parse_go_duration(text)
        except InvalidInput:
            return default
    return math.inf if seconds < 0 else seconds
