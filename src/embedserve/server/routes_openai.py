"""OpenAI-compatible routes: ``/v1/embeddings``, ``/v1/models``, ``/v1/models/{model}``.

Errors here are OpenAI-shaped (``server/errors.py`` picks the shape from the ``/v1/`` prefix).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from embedserve.errors import InvalidModelName
from embedserve.server.body import get_int, get_str, read_json
from embedserve.server.errors import HTTPError
from embedserve.server.openapi import ANY_OBJ, INT, MODEL, NUM, STR, TEXT, Op, array, obj, route
from embedserve.server.responses import JSON
from embedserve.server.routes_ollama import _state
from embedserve.server.state import check_count, check_name, embed_texts, finish_vectors
from embedserve.server.views import owned_by, unix
from embedserve.store.names import canonical

TOKEN_ARRAYS = (
    "invalid input type: arrays of token ids are not supported by this server; send the text "
    "as a string or a list of strings"
)


def parse_openai_input(value: Any) -> list[str]:
    """ "" -> [""]; str -> [str]; non-empty list of str -> list; token arrays -> a clear 400."""
    if isinstance(value, str):
        return [value]
    if value is None or value == []:
        raise HTTPError(400, "invalid input")
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or all(
            isinstance(v, list) for v in value
        ):
            raise HTTPError(400, TOKEN_ARRAYS)
    raise HTTPError(400, "invalid input type")


def _b64(row: np.ndarray) -> str:
    return base64.b64encode(row.astype("<f4", copy=False).tobytes()).decode("ascii")


async def embeddings(request: Request) -> Response:
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes, "EmbedRequest")
    name = get_str(body, "model", "EmbedRequest")
    dimensions = get_int(body, "dimensions", "EmbedRequest")
    prompt_name = get_str(body, "prompt_name", "EmbedRequest") or None
    encoding = get_str(body, "encoding_format", "EmbedRequest", "float").lower() or "float"
    if encoding not in ("float", "base64"):
        raise HTTPError(
            400,
            f"Invalid value for 'encoding_format' = {body.get('encoding_format')}. "
            "Supported values: ['float', 'base64'].",
        )
    texts = parse_openai_input(body.get("input"))
    check_count(state, len(texts))
    check_name(name, not_found=f"model '{name}' not found")
    result = await embed_texts(
        state, name, texts, not_found=f'model "{name}" not found, try pulling it first',
        client=request, prompt_name=prompt_name,
    )
    vectors = finish_vectors(result.vectors, dimensions)
    if encoding == "base64":
        data = [
            {"object": "embedding", "embedding": _b64(row), "index": i}
            for i, row in enumerate(vectors)
        ]
    else:
        data = [
            {"object": "embedding", "embedding": row, "index": i} for i, row in enumerate(vectors)
        ]
    return JSON(
        {
            "object": "list",
            "data": data,
            "model": name,
            "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
        }
    )


def _model_object(model: Any, model_id: str | None = None) -> dict[str, Any]:
    return {
        "id": model_id or model.name,
        "object": "model",
        "created": unix(model.modified_at),
        "owned_by": owned_by(model.name),
    }


async def models(request: Request) -> Response:
    state = _state(request)
    installed = await state.in_io(state.store.list)
    return JSON({"object": "list", "data": [_model_object(m) for m in installed]})


async def model(request: Request) -> Response:
    state = _state(request)
    model_id = request.path_params["model"]
    try:
        canon = canonical(model_id)
    except InvalidModelName:
        raise HTTPError(404, f"model '{model_id}' not found") from None
    found = await state.in_io(state.store.find, model_id)
    if found is None:
        raise HTTPError(404, f"model '{canon}' not found")
    return JSON(_model_object(found, model_id))


_MODEL = obj(["id", "object", "created", "owned_by"], id=STR, object=STR, created=INT, owned_by=STR)

ROUTES = [
    route("/v1/embeddings", embeddings, ["POST"], Op(
        "OpenAI embeddings",
        body=obj(["model", "input"], model=MODEL,
                 input={"anyOf": [TEXT, array(TEXT), array(INT), array(array(INT))]},
                 encoding_format={"type": "string", "enum": ["float", "base64"]}, dimensions=INT, user=STR),
        ok=obj(["object", "data", "model", "usage"], object=STR, model=STR, usage=ANY_OBJ,
               data=array(obj(["object", "embedding", "index"], object=STR, index=INT,
                              embedding={"anyOf": [array(NUM), STR]}))),
        errors=(400, 404, 413, 503), tags=["openai"], openai=True)),
    route("/v1/models", models, ["GET"], Op("OpenAI model list", ok=obj(["object", "data"], object=STR,
          data=array(_MODEL)), errors=(), tags=["openai"], openai=True)),
    route("/v1/models/{model:path}", model, ["GET"], Op("One OpenAI model", ok=_MODEL, errors=(404,),
          tags=["openai"], openai=True)),
]
