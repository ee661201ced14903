"""``embedserve keys create|list|revoke|usage`` and the serve flags' loopback rules, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from clikit import error_line, run

from embedserve.auth.sqlite_store import SQLiteKeyStore
from embedserve.auth.store import UsageDelta


def test_keys_create_prints_the_key_once_on_the_last_line(home: Path, capsys) -> None:
    code, out, err = run(
        capsys, "keys", "create", "--plan", "pro", "--name", "ci", "--models", "all-minilm,nomic*"
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    key = lines[-1]
    assert key.startswith("esk_") and " " not in key
    assert key not in "\n".join(lines[:-1])
    assert "plan pro" in out and key[:12] in lines[0]
    store = SQLiteKeyStore(home)
    record = store.find("ci")
    assert record.plan == "pro" and record.models == ("all-minilm", "nomic*")
    assert key not in record.hash

    code, out, _ = run(capsys, "keys", "list")
    assert code == 0 and "ci" in out and key[:12] in out and "active" in out
    assert key not in out and key[12:] not in out and "never" in out

    store.record_usage({record.id: UsageDelta(1e9, 1e9, 2, 5, 40, 1.25)})
    code, out, _ = run(capsys, "keys", "usage", "ci")
    assert code == 0
    rows = [ln.split() for ln in out.splitlines()]
    assert rows[0][:7] == ["NAME", "PLAN", "WINDOW", "REQUESTS", "INPUTS", "TOKENS", "COMPUTE-S"]
    assert rows[1][:8] == ["ci", "pro", "session", "0", "0", "0", "0.000", "3000"]  # expired
    now = __import__("time").time()
    store.record_usage({record.id: UsageDelta(now, now, 2, 5, 40, 1.25)})
    code, out, _ = run(capsys, "keys", "usage")
    rows = [ln.split() for ln in out.splitlines()]
    assert rows[1][:8] == ["ci", "pro", "session", "2", "5", "40", "1.250", "3000"]
    assert rows[2][:8] == ["ci", "pro", "weekly", "2", "5", "40", "1.250", "15000"]

    code, out, _ = run(capsys, "keys", "revoke", record.prefix)
    assert code == 0 and "revoked key 'ci'" in out
    code, out, _ = run(capsys, "keys", "list")
    assert "revoked" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "create", "--plan", "gold"], "unknown plan 'gold'"),
        (["keys", "create", "--models", "Bad Name!"], "invalid model name"),
        (["keys", "revoke", "nobody"], "no key named 'nobody'"),
        (["keys", "usage", "nobody"], "no key named 'nobody'"),
        (["serve", "--auth", "--host", "0.0.0.0", "--no-pull"], "needs TLS"),
        (["serve", "--auth", "--tls-cert", "/nonexistent.pem", "--no-pull"], "go together"),
        (["serve", "--plans", "/nonexistent.toml", "--auth", "--no-pull"], "cannot read plans"),
    ],
)
def test_cli_errors_are_one_line(home: Path, capsys, argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert message in error_line(err)


def test_keys_create_twice_with_one_name_fails(home: Path, capsys) -> None:
    assert run(capsys, "keys", "create", "--name", "dup")[0] == 0
    code, _, err = run(capsys, "keys", "create", "--name", "dup")
    assert code == 1 and "a key named 'dup' already exists" in error_line(err)


def test_ps_without_a_server_says_so(home: Path, capsys, monkeypatch) -> None:
    from serverkit import free_socket

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    monkeypatch.setenv("EMBEDSERVE_HOST", f"127.0.0.1:{port}")
    code, _, err = run(capsys, "ps")
    assert code == 1 and "could not reach embedserve" in error_line(err)
