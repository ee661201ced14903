from __future__ import annotations

import socket
import time

import pytest

from embedserve.config import Settings
from embedserve.errors import InvalidInput, UpstreamError
from embedserve.index.collection import Collection
from embedserve.index.rag import build_prompt, endpoint, retrieve, stream_answer

from .conftest import CountingEncoder
from .llm_stub import llm_stub


@pytest.fixture
def col(settings: Settings, encoder: CountingEncoder) -> Collection:
    c = Collection.open("kb", settings=settings, encoder=encoder)
    c.add([
        {"id": "a", "text": "the eiffel tower is in paris france"},
        {"id": "b", "text": "the colosseum is in rome italy"},
        {"id": "c", "text": "bananas are yellow fruit"},
    ])
    return c


def test_prompt_cites_chunk_ids(col: Collection) -> None:
    r = retrieve(col, "where is the eiffel tower in paris?", top_k=2)
    assert r.hits[0].id == "a"
    assert "[a#0] the eiffel tower is in paris france" in r.prompt
    assert r.prompt.rstrip().endswith("Answer:") and "Question: where is the eiffel tower" in r.prompt
    assert r.sources()[0]["source"] == "a#0"
    assert "(no documents found)" in build_prompt("q", [])


def test_endpoint() -> None:
    assert endpoint("localhost:11434") == ("http://localhost:11434/api/generate", "generate")
    assert endpoint("http://h/api/chat/") == ("http://h/api/chat", "chat")


def test_streams_generate_and_chat(col: Collection) -> None:
    r = retrieve(col, "eiffel tower", top_k=1)
    with llm_stub() as stub:
        assert "".join(stream_answer(stub.url, "tiny", r.prompt)) == "The answer is in [a#0]."
        path, body = stub.requests[-1]
        assert path == "/api/generate" and body["model"] == "tiny" and body["stream"] is True
        assert "[a#0]" in body["prompt"]
        assert "".join(stream_answer(stub.url + "/api/chat", "tiny", r.prompt)) == "The answer is in [a#0]."
        assert stub.requests[-1][1]["messages"][0]["content"] == r.prompt


@pytest.mark.parametrize(
    "mode,msg",
    [
        ("status500", "HTTP 500: model 'x' not found"),
        ("error_line", "failed: out of memory"),
        ("cut", "before it was done"),
        ("garbage", "not JSON"),
        ("hang", "did not answer in time"),
    ],
)
def test_failing_upstream_is_a_clear_error(mode: str, msg: str) -> None:
    with llm_stub() as stub:
        stub.mode = mode
        t0 = time.monotonic()
        with pytest.raises(UpstreamError, match=msg):
            list(stream_answer(stub.url, "tiny", "p", read_timeout=0.5))
        assert time.monotonic() - t0 < 2.5


def test_unreachable_upstream() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(UpstreamError, match="cannot reach"):
        list(stream_answer(f"http://127.0.0.1:{port}", "tiny", "p", connect_timeout=1))


def test_no_model_is_a_user_error() -> None:
    with pytest.raises(InvalidInput, match="--llm-model"):
        list(stream_answer("http://127.0.0.1:9", "", "p"))
