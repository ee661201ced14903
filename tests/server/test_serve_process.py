"""``embedserve serve`` as a process: graceful SIGTERM (in-flight work finishes, exit 0), the CLI
address handling, and the first-start pull of the default model."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serverkit import FakeStore, free_socket

from embedserve.cli.serve import _address, ensure_default_model
from embedserve.config import Settings

HERE = Path(__file__).parent

SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from serverkit import FakeLoader, FakeStore, settings
from embedserve.cli.serve import run
from embedserve.server.app import create_app
store = FakeStore()
app = create_app(settings(), loader=FakeLoader(store, delay_per_batch=1.0), store=store)
sys.exit(0 if run(app, "127.0.0.1", int(sys.argv[1]), grace=5) else 3)
"""


def _port() -> int:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    return port


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.communicate()}")
        try:
            httpx.get(url + "/", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


def test_sigterm_finishes_in_flight_requests_and_exits_zero(tmp_path: Path) -> None:
    port = _port()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        assert (
            httpx.post(url + "/api/embed", json={"model": "fake", "input": ""}).status_code == 200
        )
        result: dict[str, object] = {}

        def slow() -> None:
            r = httpx.post(
                url + "/api/embed", json={"model": "fake", "input": "slow one"}, timeout=10
            )
            result["status"] = r.status_code
            result["n"] = len(r.json()["embeddings"])

        worker = threading.Thread(target=slow)
        worker.start()
        time.sleep(0.4)  # the request is inside the (1 s) engine call
        proc.send_signal(signal.SIGTERM)
        worker.join(10)
        assert result == {"status": 200, "n": 1}
        assert proc.wait(10) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_serve_binds_loopback_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _port()
    env = dict(os.environ, EMBEDSERVE_HOME=str(tmp_path / "home"), EMBEDSERVE_OFFLINE="1")
    env.pop("EMBEDSERVE_HOST", None)
    env["OLLAMA_HOST"] = f"127.0.0.1:{port}"  # picked up when no flag is given
    exe = [sys.executable, "-m", "embedserve", "serve", "--no-pull"]
    proc = subprocess.Popen(exe, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        assert httpx.get(url + "/").text == "Ollama is running"
        assert httpx.get(url + "/api/tags").json() == {"models": []}
        r = httpx.post(url + "/api/embed", json={"model": "all-minilm", "input": "x"})
        assert r.status_code == 404
        assert r.json() == {"error": 'model "all-minilm" not found, try pulling it first'}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert f"listening on http://127.0.0.1:{port}" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, ("127.0.0.1", 11434)),
        ("0.0.0.0", None, ("0.0.0.0", 11434)),
        (":8080", None, ("127.0.0.1", 8080)),
        ("localhost:9000", 9001, ("localhost", 9001)),
        ("http://example", None, ("example", 80)),
    ],
)
def test_address_flags(host, port, expected) -> None:
    s = _address(argparse.Namespace(host=host, port=port), Settings())
    assert (s.host, s.port) == expected


def test_first_start_pulls_the_default_model_visibly(capsys) -> None:
    store = FakeStore(installed=(), catalogue=("all-minilm",))
    ensure_default_model(Settings(), store)
    assert store.find("all-minilm") is not None
    err = capsys.readouterr().err
    assert "pulling the default model all-minilm" in err
    assert "pulling manifest" in err
    ensure_default_model(Settings(), store)  # installed: nothing printed, nothing pulled
    assert capsys.readouterr().err == ""
    offline = FakeStore(installed=(), catalogue=("all-minilm",))
    ensure_default_model(Settings(offline=True), offline)
    assert offline.find("all-minilm") is None and "offline" in capsys.readouterr().err
