"""Usage is durable: real server processes, SIGTERM before the periodic flush, and a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ollama
import pytest
from serverkit import free_socket

from embedserve.auth import create_key
from embedserve.auth.plans import DEFAULT_PLANS
from embedserve.auth.sqlite_store import SQLiteKeyStore

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent.parent / "server"

SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
from serverkit import FakeLoader, FakeStore
from embedserve.cli.serve import run
from embedserve.config import Settings
from embedserve.server.app import create_app
store = FakeStore()
settings = Settings(home=Path(sys.argv[2]), auth=True, cache_mb=0)  # every request computes
app = create_app(settings, loader=FakeLoader(store, delay_per_batch=0.05), store=store)
sys.exit(0 if run(app, "127.0.0.1", int(sys.argv[1]), grace=5) else 3)
"""


def _start(script: Path, home: Path) -> tuple[subprocess.Popen, str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), str(home)], stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # generous: a loaded 2-core box starts a server slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.communicate()}")
        try:
            httpx.get(url + "/health", timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not come up")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    err = proc.stderr.read().decode()
    assert code == 0, err
    return err


def test_usage_survives_sigterm_and_restart_and_flushes_periodically(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = SQLiteKeyStore(home)
    key, record = create_key(store, DEFAULT_PLANS, "pro", name="durable")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    client_headers = {"Authorization": f"Bearer {key}"}

    proc, url = _start(script, home)
    try:
        client = ollama.Client(host=url, headers=client_headers, timeout=60)
        for _ in range(3):
            client.embed(model="fake", input=["a b c", "d"])
        before = store.usage(record.id)  # within the 2 s flush interval: maybe not written yet
        err = _stop(proc)  # SIGTERM writes what is pending
    finally:
        if proc.poll() is None:
            proc.kill()
    assert key not in err
    session = store.usage(record.id)["session"]
    assert session.requests == 3 and session.inputs == 6 and session.tokens == 3 * (5 + 3)
    assert session.compute_seconds >= 3 * 0.05 * 0.9
    assert before.get("session") is None or before["session"].requests <= 3

    proc, url = _start(script, home)  # a restart reads the windows back
    try:
        r = httpx.get(url + "/api/usage", headers=client_headers, timeout=60)
        assert r.status_code == 200
        assert r.json()["windows"]["session"]["requests"] == 3
        assert r.json()["windows"]["session"]["compute_seconds"] == pytest.approx(
            session.compute_seconds, abs=1e-6
        )
        ollama.Client(host=url, headers=client_headers, timeout=60).embed(model="fake", input="again")
        deadline = time.monotonic() + 60  # flushed (every 2 s) without any signal or stop
        while store.usage(record.id)["session"].requests < 4:
            assert time.monotonic() < deadline, "usage was not flushed periodically"
            time.sleep(0.2)
        assert store.get(record.id).last_used_at is not None
        _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_auth_over_tls(tmp_path: Path) -> None:
    import os
    import shutil

    import servicekit

    servicekit.require(shutil.which("openssl") is not None, "openssl (Debian package openssl)")
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key_file),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    env = dict(os.environ, EMBEDSERVE_HOME=str(tmp_path / "home"), EMBEDSERVE_OFFLINE="1")
    for name in ("EMBEDSERVE_HOST", "OLLAMA_HOST", "EMBEDSERVE_AUTH", "EMBEDSERVE_API_KEY"):
        env.pop(name, None)
    created = subprocess.run(
        [sys.executable, "-m", "embedserve", "keys", "create", "--plan", "free"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    api_key = created.stdout.strip().splitlines()[-1]
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embedserve",
            "serve",
            "--no-pull",
            "--auth",
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key_file),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{port}"
    import ssl

    tls = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                httpx.get(url + "/", verify=tls, timeout=0.5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        assert httpx.get(url + "/api/tags", verify=tls).status_code == 401
        r = httpx.get(url + "/api/tags", verify=tls, headers={"Authorization": f"Bearer {api_key}"})
        assert r.status_code == 200 and r.json() == {"models": []}
        err = _stop(proc)
        assert f"listening on https://127.0.0.1:{port} (auth on)" in err and api_key not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_binding_beyond_loopback_without_auth_warns(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from embedserve.cli.serve import _cloud
    from embedserve.config import Settings

    flags = dict(auth=False, plans=None, remote=None, tls_cert=None, tls_key=None, insecure=False)
    _cloud(argparse.Namespace(**flags), Settings(host="0.0.0.0"))
    assert "warning: listening on 0.0.0.0 without --auth" in capsys.readouterr().err
    _cloud(argparse.Namespace(**flags), Settings(host="127.0.0.1"))
    assert capsys.readouterr().err == ""
    flags.update(auth=True, insecure=True)
    assert _cloud(argparse.Namespace(**flags), Settings(host="0.0.0.0")).auth
