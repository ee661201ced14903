"""Running the CLI in-process in tests: exit code, stdout, stderr; and its one-line errors."""

from __future__ import annotations

import pytest

from embedserve.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The single ``Error:`` line a user error prints (and no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
