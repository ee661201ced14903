"""EMBEDSERVE_DEVICE: which execution providers a session gets, and clear errors without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clikit import error_line, run
from tinybert import make_tiny_bert

from embedserve.config import Settings
from embedserve.engine.onnx import CPU, CUDA, graph_device, providers
from embedserve.errors import EngineError, InvalidInput


def test_providers_follow_the_device() -> None:
    both = [CUDA, CPU]
    assert providers("auto", both) == [CUDA, CPU]
    assert providers("auto", [CPU]) == [CPU]
    assert providers("cpu", both) == [CPU]
    assert providers("cuda", both) == [CUDA, CPU]
    assert graph_device(providers("cuda", both)) == "cuda"
    assert graph_device(providers("auto", [CPU])) == "cpu"
    with pytest.raises(EngineError, match=r"no CUDA execution provider .*embedserve\[gpu\]"):
        providers("cuda", [CPU])


def test_the_device_comes_from_the_environment() -> None:
    assert Settings.from_env({}).device == "auto"
    assert Settings.from_env({"EMBEDSERVE_DEVICE": " CUDA "}).device == "cuda"
    with pytest.raises(InvalidInput, match="EMBEDSERVE_DEVICE must be one of auto, cpu, cuda"):
        Settings.from_env({"EMBEDSERVE_DEVICE": "gpu"})


def test_cuda_without_a_cuda_build_is_one_line_and_cpu_works(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA execution provider")
    src = make_tiny_bert(tmp_path / "tiny")
    assert run(capsys, "create", "tiny", "--from", str(src))[0] == 0
    monkeypatch.setenv("EMBEDSERVE_DEVICE", "cuda")
    code, _, err = run(capsys, "embed", "-m", "tiny", "hello")
    assert code == 1
    assert "EMBEDSERVE_DEVICE=cuda, but this onnxruntime has no CUDA" in error_line(err)
    monkeypatch.setenv("EMBEDSERVE_DEVICE", "tpu")
    code, _, err = run(capsys, "embed", "-m", "tiny", "hello")
    assert code == 1 and "EMBEDSERVE_DEVICE must be one of" in error_line(err)
    monkeypatch.setenv("EMBEDSERVE_DEVICE", "cpu")
    assert run(capsys, "embed", "-m", "tiny", "hello")[0] == 0


def test_the_cuda_int8_graph_computes_what_the_cpu_one_does(tmp_path: Path) -> None:
    """Run here on the CPU EP (ONNX MatMulInteger has a CPU kernel too): same integers, same sums.

    With the engine's session options (their exact u8 x s8 path: see ``session_options``)."""
    import onnxruntime as ort

    from embedserve.engine.onnx import attention_split, pad_batch, session_options
    from embedserve.store.graph import build_graph
    from embedserve.store.folder import inspect_folder  # noqa: F401  (the builder reads the folder)

    src = make_tiny_bert(tmp_path / "tiny", hidden=64, intermediate=128)
    rows = sorted([[2, 40, 41, 42, 3], [2, 50, 3], [2, 44, 45, 46, 47, 48, 49, 3]], key=len)
    ids, mask = pad_batch(rows)
    split = attention_split([len(r) for r in rows])
    feeds = {"input_ids": ids, "attention_mask": mask, "split": np.array([split], np.int64),
             "width_a": np.array([len(rows[split - 1])], np.int64)}
    out = {}
    for device in ("cpu", "cuda"):
        model = build_graph(src, "int8", device=device)
        sess = ort.InferenceSession(model.SerializeToString(), session_options(), providers=[CPU])
        out[device] = sess.run(["pooled"], feeds)[0]
    np.testing.assert_allclose(out["cuda"], out["cpu"], rtol=0, atol=1e-5 * np.abs(out["cpu"]).max())
