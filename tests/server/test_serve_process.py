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
import sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from serverkit import FakeLoader, FakeStore, settings
from embedserve.cli.serve import run
from embedserve.server.app import create_app
entered, release = Path(sys.argv[2]), Path(sys.argv[3])

def hold(batch):  # the engine says it has a batch, then holds it until the test releases it
    entered.touch()
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)

store = FakeStore()
app = create_app(settings(), loader=FakeLoader(store, fail=hold), store=store)
sys.exit(0 if run(app, "127.0.0.1", int(sys.argv[1]), grace=60) else 3)
"""
UP_SECONDS = 120  # generous: a loaded 2-core box can take long to import and start a server


def _port() -> int:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    return port


def _wait_until(condition, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=5)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        pass
    return False


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = UP_SECONDS) -> None:
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
    """Waits on states, not on time: SIGTERM arrives while the request is held in the engine, and
    the engine lets it go only once the server has stopped taking connections (shutting down)."""
    port = _port()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    entered, release = tmp_path / "entered", tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), str(entered), str(release)],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    worker = None
    try:
        _wait_up(url, proc)
        assert (
            httpx.post(url + "/api/embed", json={"model": "fake", "input": ""}, timeout=60).status_code == 200
        )
        result: dict[str, object] = {}

        def slow() -> None:
            r = httpx.post(
                url + "/api/embed", json={"model": "fake", "input": "slow one"}, timeout=120
            )
            result["status"] = r.status_code
            result["n"] = len(r.json()["embeddings"])

        worker = threading.Thread(target=slow)
        worker.start()
        _wait_until(entered.exists, "the request is inside the engine call")
        proc.send_signal(signal.SIGTERM)
        _wait_until(lambda: _refused(url), "the server stops accepting connections")
        assert proc.poll() is None  # still up: the in-flight request holds the shutdown
        release.touch()
        worker.join(60)
        assert result == {"status": 200, "n": 1}
        assert proc.wait(60) == 0
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if worker is not None:
            worker.join(60)


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
        assert httpx.get(url + "/", timeout=60).text == "Ollama is running"
        assert httpx.get(url + "/api/tags", timeout=60).json() == {"models": []}
        r = httpx.post(url + "/api/embed", json={"model": "all-minilm", "input": "x"}, timeout=60)
        assert r.status_code == 404
        assert r.json() == {"error": 'model "all-minilm" not found, try pulling it first'}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
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
