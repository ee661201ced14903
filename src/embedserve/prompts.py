"""Prompts: the text prefixes a model was trained with (sentence-transformers' ``prompts`` and
``default_prompt_name`` in ``config_sentence_transformers.json``: e5's ``query: ``/``passage: ``,
nomic's ``search_query: ``/``search_document: ``).

The rule is sentence-transformers': an explicit ``prompt`` string wins; else ``prompt_name``
picks one of the model's prompts (an unknown name is an error listing them); else the model's
default prompt, if it names one. The prompt is prepended to each text before tokenisation, so
token counts include it, as sentence-transformers counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embedserve.errors import InvalidInput

# What a collection calls its two sides, in the names models use for them (first match wins).
QUERY_NAMES = ("query", "search_query", "retrieval.query")
DOCUMENT_NAMES = ("document", "search_document", "passage", "retrieval.passage", "corpus")


def resolve(
    prompts: Mapping[str, str],
    default_name: str | None = None,
    *,
    prompt_name: str | None = None,
    prompt: str | None = None,
    model: str = "",
) -> str:
    """The prefix to prepend ("" for none)."""
    if prompt is not None and prompt_name is not None:
        raise InvalidInput("give either prompt or prompt_name, not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidInput(f"prompt must be a string, not {type(prompt).__name__}")
        return prompt
    if prompt_name is not None:
        if not isinstance(prompt_name, str):
            raise InvalidInput(f"prompt_name must be a string, not {type(prompt_name).__name__}")
        if prompt_name not in prompts:
            raise InvalidInput(unknown_message(prompt_name, prompts, model))
        return prompts[prompt_name]
    if default_name:
        return prompts.get(default_name, "")
    return ""


def model_prefix(info: Any, *, prompt_name: str | None = None, prompt: str | None = None) -> str:
    """:func:`resolve` for a model (an ``EngineInfo``: its prompts, default prompt and name)."""
    return resolve(info.prompts, info.default_prompt_name, prompt_name=prompt_name, prompt=prompt,
                   model=info.name)


def unknown_message(name: str, prompts: Mapping[str, str], model: str = "") -> str:
    whose = f"model '{model}'" if model else "this model"
    if not prompts:
        return f"unknown prompt_name '{name}': {whose} has no prompts"
    known = ", ".join(f"'{k}'" for k in prompts)
    return f"unknown prompt_name '{name}' for {whose}; its prompts: {known}"


def apply(prefix: str, texts: Sequence[str]) -> list[str]:
    return [prefix + t if isinstance(t, str) else t for t in texts] if prefix else list(texts)


def role_prompt(prompts: Mapping[str, str], role: str) -> str | None:
    """The model's prompt name for a collection side (``"query"`` or ``"document"``), if it has one."""
    names = QUERY_NAMES if role == "query" else DOCUMENT_NAMES
    return next((n for n in names if n in prompts), None)
