"""``pull``/``list``/``show``/``rm``/``cp``/``create`` run in-process through ``main``."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from clikit import run

from embedserve.cli import main
from embedserve.cli.models import human_ago, human_bytes, human_count
from embedserve.store.local import ModelStore



def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_human_formats() -> None:
    assert human_bytes(612) == "612 B"
    assert human_bytes(4_500) == "4.5 KB"
    assert human_bytes(91_567_913) == "92 MB"
    assert human_count(22_713_216) == "22.7M"
    assert human_count(33_360_000) == "33.4M"
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert human_ago(now - timedelta(minutes=3, seconds=5), now) == "3 minutes ago"
    assert human_ago(now - timedelta(seconds=0.2), now) == "Less than a second ago"
    assert human_ago(now - timedelta(seconds=90), now) == "About a minute ago"
    assert human_ago(now - timedelta(hours=5), now) == "5 hours ago"
    assert human_ago(now - timedelta(days=3), now) == "3 days ago"


def test_create_list_show_cp_rm(
    home: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.split() == ["NAME", "ID", "SIZE", "QUANTIZATION", "MODIFIED"]

    code, out, _ = run(capsys, "create", "Tiny", "--from", str(tiny_model_dir))
    assert code == 0
    assert re.match(r"created tiny:latest \([0-9a-f]{12}, fp32\) from folder ", out)

    code, out, _ = run(capsys, "create", "tiny8", "--from", "tiny", "--quantize", "int8")
    assert code == 0 and "created tiny8:latest" in out and "int8" in out

    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "QUANTIZATION", "MODIFIED"]
    assert [ln.split()[0] for ln in lines[1:]] == ["tiny8:latest", "tiny:latest"]
    assert [ln.split()[4] for ln in lines[1:]] == ["int8", "fp32"]
    model = ModelStore(home).get("tiny")
    assert model.id in lines[2]
    assert re.search(
        r"\d+(\.\d)? (KB|MB)\s+fp32\s+(Less than a second|\d+ seconds?) ago$", lines[2]
    )

    code, out, _ = run(capsys, "show", "tiny8")
    assert code == 0
    for pattern in (
        r"architecture\s+bert",
        r"parameters\s+\d",
        r"embedding length\s+48",
        r"context length\s+32",
        r"pooling\s+mean",
        r"normalize\s+yes",
        r"quantization\s+int8",
        r"license\s+unknown",
        r"source\s+model tiny:latest",
        r"digest\s+sha256:" + model.digest,
        r"model\.safetensors\s+\d",
    ):
        assert re.search(pattern, out), pattern

    code, out, _ = run(capsys, "show", "tiny", "--verify")
    assert code == 0 and "verified" in out

    code, out, _ = run(capsys, "cp", "tiny", "ns/tiny-copy:v1")
    assert code == 0 and out.strip() == "copied 'tiny:latest' to 'ns/tiny-copy:v1'"

    code, out, err = run(capsys, "rm", "tiny", "nope", "tiny8")
    assert code == 1
    assert "deleted 'tiny:latest'" in out and "deleted 'tiny8:latest'" in out
    assert "model 'nope:latest' is not installed" in one_error_line(err)
    code, out, _ = run(capsys, "list")
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["ns/tiny-copy:v1"]


def test_pull_from_folder_then_again_is_a_no_op(
    home: Path, real_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = ModelStore(real_home).get("all-minilm").folder
    code, out, err = run(capsys, "pull", "all-minilm", "--from", str(folder))
    assert code == 0, err
    assert out.startswith("pulled all-minilm:latest (53aa51172d14, 92 MB) from folder ")
    assert f"using folder {folder}" in err
    code, out, err = run(capsys, "pull", "ALL-MINILM:latest")
    assert code == 0
    assert (
        out.strip()
        == "all-minilm:latest is already installed and verified (53aa51172d14); nothing to do"
    )


def test_pull_unreachable_model_fails_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDSERVE_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("EMBEDSERVE_OFFLINE", raising=False)
    code, _, err = run(capsys, "pull", "all-minilm:33m")
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(
        "Error: could not pull all-minilm:33m; tried huggingface.co/sentence-transformers/"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["show", "all-minilm"],
            "Error: model 'all-minilm:latest' is not installed; run: embedserve pull all-minilm:latest",
        ),
        (["show", "all-minilm:99m"], "Error: model 'all-minilm:99m' not found: unknown tag '99m'"),
        (
            ["show", "all-minlm"],
            "Error: model 'all-minlm:latest' not found; did you mean all-minilm:latest",
        ),
        (["show", "bad name"], "Error: invalid model name 'bad name'"),
        (
            ["pull", "all-minilm:nope"],
            "Error: model 'all-minilm:nope' not found: unknown tag 'nope'",
        ),
        (["rm", "ghost"], "Error: model 'ghost:latest' is not installed"),
        (["cp", "ghost", "other"], "Error: model 'ghost:latest' not found"),
        (["create", "x", "--from", "./no/such/dir"], "Error: ./no/such/dir: no such folder"),
        (
            ["pull", "all-minilm", "--from", "/no/such/dir"],
            "Error: could not pull all-minilm:latest; tried folder /no/such/dir: no such folder or .whl file",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_1(
    home: Path, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert one_error_line(err).startswith(expected)


def test_missing_option_is_one_line_exit_1(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["create", "x"])
    assert exc.value.code == 1
    assert (
        one_error_line(capsys.readouterr().err)
        == "Error: the following arguments are required: --from"
    )


def test_create_reports_a_bad_folder(
    home: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    (folder / "tokenizer.json").unlink()
    code, _, err = run(capsys, "create", "x", "--from", str(folder))
    assert code == 1
    assert (
        one_error_line(err)
        == f"Error: {folder} is not a usable sentence-transformers folder: tokenizer.json is missing"
    )


def test_corrupt_entry_says_how_to_re_pull(
    home: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["create", "all-minilm", "--from", str(tiny_model_dir)]) == 0
    model = ModelStore(home).get("all-minilm")
    weights = model.folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    code, _, err = run(capsys, "show", "all-minilm", "--verify")
    assert code == 1
    line = one_error_line(err)
    assert "is corrupt: sha256 mismatch for model.safetensors" in line
    assert line.endswith("re-pull it: embedserve pull all-minilm:latest")
    with weights.open("ab") as f:
        f.write(b"x")
    code, _, err = run(capsys, "show", "all-minilm")
    assert code == 1 and "model.safetensors is" in one_error_line(err)
