"""``embedserve ps`` and ``embedserve stop`` against a running server with auth on."""

from __future__ import annotations

import time
from pathlib import Path

import ollama
import pytest
from authkit import auth_server
from clikit import error_line, run


def test_ps_and_stop_talk_to_the_server_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with auth_server(tmp_path) as srv:
        key = srv.key("pro")
        monkeypatch.setenv("EMBEDSERVE_HOST", srv.url.removeprefix("http://"))
        monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
        monkeypatch.delenv("EMBEDSERVE_API_KEY", raising=False)
        code, _, err = run(capsys, "ps")
        assert code == 1
        assert error_line(err) == "Error: unauthorized (set EMBEDSERVE_API_KEY to a valid key)"

        monkeypatch.setenv("EMBEDSERVE_API_KEY", key)
        ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {key}"}).embed(
            model="fake", input="x"
        )
        code, out, err = run(capsys, "ps")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
        assert lines[1].startswith("fake:latest") and "minutes from now" in lines[1]

        code, _, err = run(capsys, "stop", "other")
        assert code == 1 and "couldn't find model 'other'" in error_line(err)
        code, _, err = run(capsys, "stop", "fake")
        assert code == 0, err
        deadline = time.monotonic() + 5
        while True:
            code, out, _ = run(capsys, "ps")
            if "fake:latest" not in out:
                break
            assert time.monotonic() < deadline, "stop did not unload the model"
            time.sleep(0.1)
