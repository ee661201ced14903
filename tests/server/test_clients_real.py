"""The official clients (ollama-python, openai-python, ollama-js) against the server running the
real all-minilm model, over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import ollama
import openai
import pytest
from serverkit import serve

from embedserve.config import Settings
from embedserve.server.app import create_app

pytestmark = pytest.mark.slow

SKY = "why is the sky blue?"
GRASS = "why is the grass green?"


def _link_copy(src: Path, dst: Path) -> None:
    """A private EMBEDSERVE_HOME sharing the real model's files (hard links: instant, no space)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


@pytest.fixture(scope="module")
def url(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("serve-home") / "home"
    _link_copy(real_home, home)
    settings = replace(Settings(), home=home, offline=True)
    with serve(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """sentence-transformers' all-MiniLM-L6-v2 vectors, recorded in tests/fixtures."""
    data = np.load(
        Path(__file__).parent.parent / "fixtures" / "golden_all_minilm.npz", allow_pickle=True
    )
    return {k: data[k] for k in data.files}


def test_ollama_python_embed(url: str) -> None:
    client = ollama.Client(host=url)
    one = client.embed(model="all-minilm", input=SKY)
    assert one.model == "all-minilm"
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 384
    assert one.prompt_eval_count == 8  # [CLS] why is the sky blue ? [SEP], as Ollama counts
    assert abs(np.linalg.norm(one.embeddings[0]) - 1) < 1e-5
    two = client.embed(model="all-minilm", input=[SKY, GRASS])
    assert two.prompt_eval_count == 16
    assert np.allclose(two.embeddings[0], one.embeddings[0], atol=1e-5)
    cos = float(np.dot(two.embeddings[0], two.embeddings[1]))
    assert 0.3 < cos < 0.95
    small = client.embed(model="all-minilm", input=SKY, dimensions=64)
    assert len(small.embeddings[0]) == 64
    long_text = "word " * 400
    assert client.embed(model="all-minilm", input=long_text).prompt_eval_count == 256
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="all-minilm", input=long_text, truncate=False)
    assert err.value.status_code == 400
    assert err.value.error == "the input length exceeds the context length"


def test_ollama_python_matches_sentence_transformers(url: str, reference) -> None:
    texts = [str(t) for t in reference["sts_texts"][:16]]
    expected = reference["sts_embeddings"][:16].astype(np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = np.asarray(ollama.Client(host=url).embed(model="all-minilm", input=texts).embeddings)
    assert (got * expected).sum(1).min() > 0.999
    # legacy /api/embeddings: the raw (un-normalised) pooled vector, as classic Ollama returns
    client = ollama.Client(host=url)
    for text, raw in zip(reference["raw_texts"][:3], reference["raw_pooled"][:3]):
        vec = np.asarray(client.embeddings(model="all-minilm", prompt=str(text)).embedding)
        cos = float(vec @ raw / (np.linalg.norm(vec) * np.linalg.norm(raw)))
        assert cos > 0.999 and abs(np.linalg.norm(vec) / np.linalg.norm(raw) - 1) < 0.01


def test_ollama_python_legacy_and_management(url: str) -> None:
    client = ollama.Client(host=url)
    legacy = client.embeddings(model="all-minilm", prompt=SKY)
    assert len(legacy.embedding) == 384
    assert np.linalg.norm(legacy.embedding) > 1.5  # raw pooled, not unit length
    names = [m.model for m in client.list().models]
    assert "all-minilm:latest" in names
    shown = client.show("all-minilm")
    assert shown.modelinfo is not None and shown.capabilities == ["embedding"]
    running = client.ps().models
    assert any(m.model == "all-minilm:latest" and m.expires_at is not None for m in running)
    statuses = [p.status for p in client.pull("all-minilm:22m", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.copy("all-minilm", "mini-backup").status == "success"
    assert "mini-backup:latest" in [m.model for m in client.list().models]
    assert len(client.embed(model="mini-backup", input="x").embeddings[0]) == 384
    assert client.delete("mini-backup").status == "success"
    assert client.delete("all-minilm:22m").status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="no-such-model", input="x")
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:
        client.show("no-such-model")
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:  # unknown to the registry: before any line
        list(client.pull("no-such-model", stream=True))
    assert err.value.status_code == 404


def test_openai_python(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    default = client.embeddings.create(model="all-minilm", input=[SKY, GRASS])  # base64 on the wire
    floats = client.embeddings.create(
        model="all-minilm", input=[SKY, GRASS], encoding_format="float"
    )
    a = np.array([d.embedding for d in default.data])
    b = np.array([d.embedding for d in floats.data])
    assert a.shape == (2, 384) and np.allclose(a, b, atol=1e-7)
    assert default.usage.prompt_tokens == default.usage.total_tokens == 16
    ref = ollama.Client(host=url).embed(model="all-minilm", input=[SKY, GRASS]).embeddings
    assert np.allclose(a, ref, atol=1e-6)
    short = client.embeddings.create(model="all-minilm", input=SKY, dimensions=128)
    assert len(short.data[0].embedding) == 128
    assert "all-minilm:latest" in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_ollama_js(url: str, tmp_path: Path) -> None:
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        pytest.skip("node/npm not installed")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", "ollama"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"npm could not install ollama from the registry: {proc.stderr.strip()[-300:]}")
    script = tmp_path / "check.mjs"
    script.write_text(
        """
import { Ollama } from 'ollama'
const client = new Ollama({ host: process.argv[2] })
const one = await client.embed({ model: 'all-minilm', input: 'why is the sky blue?' })
const two = await client.embed({ model: 'all-minilm', input: ['a', 'b'], dimensions: 32 })
const list = await client.list()
let status = 0
try { await client.embed({ model: 'no-such-model', input: 'x' }) } catch (e) { status = e.status_code }
console.log(JSON.stringify({ dim: one.embeddings[0].length, count: one.prompt_eval_count,
  two: two.embeddings.map(e => e.length), names: list.models.map(m => m.model), status }))
"""
    )
    out = subprocess.run(
        [node, str(script), url], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dim"] == 384 and result["count"] == 8
    assert result["two"] == [32, 32]
    assert "all-minilm:latest" in result["names"]
    assert result["status"] == 404


def test_concurrent_clients_real_model(url: str, reference) -> None:
    """Merged, length-sorted, padded batches give each client the vector it gets alone."""
    import asyncio

    texts = [str(t) for t in reference["sts_texts"][100:124]]
    client = ollama.Client(host=url)
    alone = [client.embed(model="all-minilm", input=t).embeddings[0] for t in texts]

    async def many() -> list:
        c = ollama.AsyncClient(host=url)
        return await asyncio.gather(*(c.embed(model="all-minilm", input=t) for t in texts))

    together = asyncio.run(many())
    for a, b in zip(alone, together):
        assert np.allclose(a, b.embeddings[0], atol=1e-5)
