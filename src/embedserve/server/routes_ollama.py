"""Ollama's native routes (``/api/*`` and ``/``), with its statuses, texts and field names."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from embedserve import __version__
from embedserve.durations import parse_keep_alive
from embedserve.errors import EmbedServeError, InvalidInput, InvalidModelName, ModelNotFound
from embedserve.server.body import check_options, get_bool, get_int, get_str, read_json
from embedserve.server.errors import HTTPError, status_and_message
from embedserve.server.openapi import (
    ANY_OBJ,
    BOOL,
    INT,
    MODEL,
    NUM,
    STR,
    TEXT,
    Op,
    Schema,
    array,
    obj,
    route,
)
from embedserve.server.responses import JSON
from embedserve.server.state import (
    ServerState,
    check_count,
    check_name,
    embed_texts,
    finish_vectors,
)
from embedserve.server.views import rfc3339, show, tag_entry
from embedserve.store.names import canonical


def _state(request: Request) -> ServerState:
    return request.app.state.embedserve  # type: ignore[no-any-return]


def _keep_alive(body: dict[str, Any]) -> float | None:
    try:
        return parse_keep_alive(body.get("keep_alive"))
    except InvalidInput as exc:  # Go's text, e.g. time: missing unit in duration "-1"
        raise HTTPError(400, str(exc)) from None


def parse_embed_input(value: Any) -> list[str]:
    """``/api/embed`` input rules: "" / null -> no inputs; str -> one; list of str -> each."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise HTTPError(400, "invalid input type")


def _not_found_pull(name: str) -> str:
    return f'model "{name}" not found, try pulling it first'


async def embed(request: Request) -> Response:
    t0 = time.perf_counter_ns()
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "EmbedRequest")
    name = get_str(body, "model", "EmbedRequest")
    truncate = get_bool(body, "truncate", "EmbedRequest", True)
    dimensions = get_int(body, "dimensions", "EmbedRequest")
    prompt_name = get_str(body, "prompt_name", "EmbedRequest") or None
    keep_alive = _keep_alive(body)
    options = check_options(body, "EmbedRequest")
    check_name(name, not_found=f"model '{name}' not found")
    texts = parse_embed_input(body.get("input"))
    check_count(state, len(texts))
    result = await embed_texts(
        state,
        name,
        texts,
        truncate=truncate,
        keep_alive=keep_alive,
        num_ctx=int(options.get("num_ctx") or 0),
        not_found=_not_found_pull(name),
        client=request,
        prompt_name=prompt_name,
    )
    if not texts:
        return JSON({"model": name, "embeddings": []})
    vectors = finish_vectors(result.vectors, dimensions)
    out: dict[str, Any] = {
        "model": name,
        "embeddings": vectors,
        "total_duration": max(1, time.perf_counter_ns() - t0),
        "load_duration": max(1, result.load_ns),
        "prompt_eval_count": result.tokens,
    }
    return JSON(out)


async def embeddings(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "EmbeddingRequest")
    name = get_str(body, "model", "EmbeddingRequest")
    prompt = get_str(body, "prompt", "EmbeddingRequest")
    keep_alive = _keep_alive(body)
    check_options(body, "EmbeddingRequest")
    try:
        if not name.strip():
            raise InvalidModelName(name)
        canonical(name)
    except InvalidModelName:
        raise HTTPError(400, "model is required") from None
    texts = [prompt] if prompt else []
    # classic behaviour: an over-long prompt is truncated, never an error
    result = await embed_texts(
        state, name, texts, truncate=True, keep_alive=keep_alive, not_found=_not_found_pull(name),
        client=request,
    )
    if not texts:
        return JSON({"embedding": []})
    vector = result.vectors[0].astype("float64")
    if not (abs(vector) < float("inf")).all():
        raise HTTPError(500, "embedding contains NaN or Inf values")
    return JSON({"embedding": vector})


async def tags(request: Request) -> Response:
    state = _state(request)
    models = await state.in_io(state.store.list)
    return JSON({"models": [tag_entry(m) for m in models]})


def _model_field(body: dict[str, Any], struct: str) -> str:
    return get_str(body, "model", struct) or get_str(body, "name", struct)


async def show_route(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "ShowRequest")
    name = _model_field(body, "ShowRequest")
    if not name.strip():
        raise HTTPError(400, "model is required")
    canon = canonical(name)
    model = await state.in_io(state.store.find, name)
    if model is None:
        raise HTTPError(404, f"model '{canon}' not found")
    return JSON(show(model))


async def ps(request: Request) -> Response:
    state = _state(request)
    out = []
    for resident in state.manager.running():
        engine = resident.engine
        installed = None
        with contextlib.suppress(EmbedServeError):  # a damaged manifest: still list what runs
            installed = await state.in_io(state.store.find, resident.key)
        size = int(getattr(installed, "size", 0) or 0)
        entry: dict[str, Any] = {
            "name": resident.key,
            "model": resident.key,
            "size": size,
            "digest": getattr(installed, "digest", "") or (engine.info.digest if engine else ""),
            "details": tag_entry(installed)["details"] if installed is not None else {},
            "expires_at": rfc3339(resident.expires_at),
            "size_vram": 0,
            "context_length": engine.info.max_tokens if engine else 0,
        }
        out.append(entry)
    return JSON({"models": out})


async def pull(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "PullRequest")
    name = _model_field(body, "PullRequest")
    stream = get_bool(body, "stream", "PullRequest", True)
    get_bool(body, "insecure", "PullRequest", False)
    if not name.strip():
        raise HTTPError(400, "model is required")
    canonical(name)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def progress(event: Any) -> None:
        line = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        loop.call_soon_threadsafe(queue.put_nowait, ("event", line))

    job = loop.run_in_executor(state.io_executor, lambda: state.store.pull(name, progress=progress))
    job.add_done_callback(lambda fut: queue.put_nowait(("done", fut)))

    async def refresh() -> None:  # a resident copy of the old weights goes; next use loads the new
        await state.manager.unload(name)

    if not stream:
        try:
            await job
        except ModelNotFound as exc:
            raise HTTPError(404, str(exc)) from None
        await refresh()
        return JSON({"status": "success"})

    first = await queue.get()
    if first[0] == "done" and first[1].exception() is not None:
        failure = first[1].exception()
        if isinstance(failure, ModelNotFound):
            raise HTTPError(404, str(failure))
        raise failure

    async def lines() -> AsyncIterator[bytes]:
        item = first
        succeeded = False
        while True:
            kind, value = item
            if kind == "event":
                succeeded = succeeded or value.get("status") == "success"
                if not succeeded or value.get("status") == "success":
                    yield orjson.dumps(value) + b"\n"
            else:
                exc = value.exception()
                if exc is not None:
                    yield orjson.dumps({"error": status_and_message(exc)[1]}) + b"\n"
                    return
                await refresh()
                if not succeeded:
                    yield b'{"status":"success"}\n'
                return
            item = await queue.get()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def delete(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "DeleteRequest")
    name = _model_field(body, "DeleteRequest")
    try:
        canon = canonical(name)
    except InvalidModelName:
        raise HTTPError(400, f'name "{name}" is invalid') from None
    try:
        await state.in_io(state.store.remove, name)
    except ModelNotFound:
        raise HTTPError(404, f"model '{canon}' not found") from None
    await state.manager.unload(name)
    return Response(b"", 200)


async def copy(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "CopyRequest")
    source = get_str(body, "source", "CopyRequest")
    destination = get_str(body, "destination", "CopyRequest")
    for label, value in (("source", source), ("destination", destination)):
        try:
            canonical(value)
        except InvalidModelName:
            raise HTTPError(400, f'{label} "{value}" is invalid') from None
    try:
        await state.in_io(state.store.copy, source, destination)
    except ModelNotFound:
        raise HTTPError(404, f'model "{source}" not found') from None
    return Response(b"", 200)


async def version(request: Request) -> Response:
    return JSON({"version": __version__})


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


KEEP_ALIVE: Schema = {"type": ["string", "number"], "description": 'a duration ("5m", "1h30m") or seconds; negative keeps the model loaded'}
OPTIONS: Schema = {"type": "object", "description": "model options; num_ctx narrows the window"}
MODEL_REF = obj(model=MODEL, name=MODEL)
_TAG = obj(["name", "model", "size", "digest", "details"], name=STR, model=STR, size=INT, digest=STR,
           modified_at=STR, details=ANY_OBJ)

ROUTES = [
    route("/", root, ["GET", "HEAD"], Op("Liveness: answers 'Ollama is running'",
          ok_media={"text/plain": STR}, errors=())),
    route("/api/version", version, ["GET", "HEAD"], Op("Server version", ok=obj(["version"], version=STR),
          errors=())),
    route("/api/embed", embed, ["POST"], Op(
        "Embed one text or a list of texts",
        body=obj(["model"], model=MODEL, input={"anyOf": [TEXT, array(TEXT), {"type": "null"}]}, truncate=BOOL,
                 dimensions=INT, keep_alive=KEEP_ALIVE, options=OPTIONS),
        ok=obj(["model", "embeddings"], model=STR, embeddings=array(array(NUM)), total_duration=INT,
               load_duration=INT, prompt_eval_count=INT),
        errors=(400, 404, 413, 503), tags=["ollama"])),
    route("/api/embeddings", embeddings, ["POST"], Op(
        "Embed one prompt (Ollama's older endpoint)",
        body=obj(["model"], model=MODEL, prompt=TEXT, keep_alive=KEEP_ALIVE, options=OPTIONS),
        ok=obj(["embedding"], embedding=array(NUM)), errors=(400, 404, 413, 503), tags=["ollama"])),
    route("/api/tags", tags, ["GET", "HEAD"], Op("Installed models", ok=obj(["models"], models=array(_TAG)),
          errors=(), tags=["ollama"])),
    route("/api/show", show_route, ["POST"], Op("A model's details", body=MODEL_REF, ok=ANY_OBJ,
          errors=(400, 404, 413), tags=["ollama"])),
    route("/api/ps", ps, ["GET"], Op("Models loaded in memory", ok=obj(["models"], models=array(ANY_OBJ)),
          errors=(), tags=["ollama"])),
    route("/api/pull", pull, ["POST"], Op(
        "Pull a model (NDJSON progress stream unless stream is false)",
        body=obj(model=MODEL, name=MODEL, insecure=BOOL, stream=BOOL),
        ok=obj(["status"], status=STR), ok_media={"application/x-ndjson": STR},
        errors=(400, 404, 413, 500), tags=["ollama"])),
    route("/api/delete", delete, ["DELETE"], Op("Delete a model", body=MODEL_REF, errors=(400, 404, 413),
          tags=["ollama"])),
    route("/api/copy", copy, ["POST"], Op("Copy a model under a new name",
          body=obj(["source", "destination"], source=MODEL, destination=MODEL), errors=(400, 404, 413),
          tags=["ollama"])),
]
