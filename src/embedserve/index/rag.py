"""Retrieval-augmented answers: retrieve chunks, build a prompt citing them, stream an LLM's answer.

The upstream speaks Ollama's API: ``POST /api/generate`` (or ``/api/chat``) with ``stream: true``
answers NDJSON lines (``{"response": "...", "done": false}`` ... ``{"done": true}``; chat lines
carry ``message.content``). Every failure (refused connection, timeout, HTTP error, an ``error``
line, a stream cut before ``done``) becomes one :class:`UpstreamError`; a stalled upstream fails
after ``read_timeout`` seconds instead of hanging.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embedserve.errors import InvalidInput, UpstreamError
from embedserve.index.collection import Collection, QueryHit

SYSTEM = (
    "Answer the question using only the context below. Cite the sources you use by their ids in "
    "square brackets, like [doc#0]. If the context does not contain the answer, say so."
)


def source_id(hit: QueryHit) -> str:
    return f"{hit.id}#{hit.chunk.index}"


def build_prompt(question: str, hits: Sequence[QueryHit]) -> str:
    parts = [SYSTEM, "", "Context:"]
    for hit in hits:
        parts.append(f"[{source_id(hit)}] {' '.join(hit.text.split())}")
    if not hits:
        parts.append("(no documents found)")
    parts += ["", f"Question: {question.strip()}", "Answer:"]
    return "\n".join(parts)


@dataclass
class Retrieval:
    question: str
    hits: list[QueryHit]
    prompt: str

    def sources(self) -> list[dict[str, Any]]:
        return [{"source": source_id(h), **h.to_dict()} for h in self.hits]


def retrieve(
    collection: Collection,
    question: str,
    top_k: int = 4,
    where: Mapping[str, Any] | str | None = None,
    encoder: Any = None,
    rerank: str | None = None,
    candidates: int = 100,
) -> Retrieval:
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput("the question must be a non-empty string")
    hits = collection.query(question, top_k=top_k, where=where, encoder=encoder, rerank=rerank,
                            candidates=candidates)
    assert isinstance(hits, list)
    return Retrieval(question, hits, build_prompt(question, hits))  # type: ignore[arg-type]


def endpoint(url: str) -> tuple[str, str]:
    """``(full URL, "generate" | "chat")`` from a base URL or a full ``/api/...`` URL."""
    u = url.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        u = "http://" + u
    if u.endswith("/api/chat"):
        return u, "chat"
    if u.endswith("/api/generate"):
        return u, "generate"
    return u + "/api/generate", "generate"


def stream_answer(
    url: str,
    model: str,
    prompt: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 120.0,
    options: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Yield the answer's text pieces as the upstream streams them."""
    import httpx

    if not model:
        raise InvalidInput("no LLM model: pass --llm-model (or set EMBEDSERVE_LLM_MODEL)")
    target, kind = endpoint(url)
    body: dict[str, Any] = {"model": model, "stream": True}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if options:
        body["options"] = dict(options)
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=connect_timeout)
    done = False
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:  # noqa: SIM117
            with client.stream("POST", target, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise UpstreamError(f"LLM at {target} answered HTTP {resp.status_code}: {_error_text(resp.text)}")
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        raise UpstreamError(f"LLM at {target} sent a line that is not JSON: {line[:80]!r}") from None
                    if not isinstance(msg, dict):
                        raise UpstreamError(f"LLM at {target} sent an unexpected line: {line[:80]!r}")
                    if msg.get("error"):
                        raise UpstreamError(f"LLM at {target} failed: {msg['error']}")
                    piece = msg.get("response") if kind == "generate" else (msg.get("message") or {}).get("content")
                    if piece:
                        yield str(piece)
                    if msg.get("done"):
                        done = True
                        break
    except httpx.TimeoutException:
        raise UpstreamError(f"LLM at {target} did not answer in time (connect {connect_timeout:g}s, read {read_timeout:g}s)") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach the LLM at {target}: {exc or type(exc).__name__}") from None
    if not done:
        raise UpstreamError(f"LLM at {target} closed the stream before it was done")


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
    except ValueError:
        pass
    return " ".join(body.split())[:200] or "(empty body)"
