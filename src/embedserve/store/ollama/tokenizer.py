"""Rebuild a Hugging Face ``tokenizers`` tokenizer from a GGUF file's ``tokenizer.ggml.*`` metadata.

* ``tokenizer.ggml.model == "bert"`` (WordPiece): llama.cpp's converter stores the vocabulary in
  "phantom space" form, a word-initial piece as ``▁piece`` and a continuation ``##piece`` as
  ``piece`` (control tokens unchanged); this undoes that, and builds BERT's normaliser,
  pre-tokeniser and ``[CLS] $A [SEP]`` template. Lower-casing follows
  ``tokenizer.ggml.normalizer.lowercase`` when the file has it; older files lack the key, and
  there a vocabulary with upper-case pieces is taken to be cased.
* ``tokenizer.ggml.model == "t5"`` (SentencePiece Unigram, XLM-RoBERTa's): pieces with their scores,
  the ``precompiled_charsmap`` normaliser, SentencePiece's ``remove_extra_whitespaces`` (spaces
  stripped at both ends and runs collapsed, after the charsmap), Metaspace pre-tokeniser,
  ``<s> $A </s>`` template. llama.cpp's converter shifts fairseq's vocabulary by one and loses
  ``<mask>``: its id (``mask_token_id``) holds a ``[PAD<n>]`` placeholder, named ``<mask>`` again here.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from embedserve.errors import InvalidInput

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_PHANTOM = "\u2581"
_PLACEHOLDER = re.compile(r"\[PAD\d+\]")  # the converter's filler for ids SentencePiece lacks


def _ids(meta: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = meta.get(f"tokenizer.ggml.{key}")
        if value is not None:
            return int(value)
    return None


def _added(tokens: list[str], types: list[int]) -> list[dict[str, Any]]:
    return [
        {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, (tok, kind) in enumerate(zip(tokens, types))
        if kind in (CONTROL, UNKNOWN)
    ]


def _template(first: int, last: int, tokens: list[str]) -> dict[str, Any]:
    a, b = tokens[first], tokens[last]
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": a, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": b, "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": a, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": b, "type_id": 1}}],
        "special_tokens": {
            a: {"id": a, "ids": [first], "tokens": [a]},
            b: {"id": b, "ids": [last], "tokens": [b]},
        },
    }


def _need(value: int | None, what: str, pieces: list[str], fallback: str) -> int:
    """The id the metadata gives, else the vocabulary's ``fallback`` piece (llama.cpp's converter
    writes no CLS id for BERT: llama.cpp itself falls back to ``[CLS]``)."""
    if value is not None:
        return value
    if fallback in pieces:
        return pieces.index(fallback)
    raise InvalidInput(f"the GGUF tokenizer has no {what} token (no id, no {fallback} piece)")


def _wordpiece(meta: dict[str, Any], tokens: list[str], types: list[int]) -> dict[str, Any]:
    vocab: dict[str, int] = {}
    pieces = []
    for i, (tok, kind) in enumerate(zip(tokens, types)):
        if kind in (CONTROL, UNKNOWN, UNUSED):
            piece = tok
        elif tok.startswith(_PHANTOM):
            piece = tok[1:]
        else:
            piece = "##" + tok
        pieces.append(piece)
        vocab.setdefault(piece, i)
    unk = _ids(meta, "unknown_token_id")
    unk_token = pieces[unk] if unk is not None else "[UNK]"
    lowercase = meta.get("tokenizer.ggml.normalizer.lowercase")
    if lowercase is None:  # older converters: a cased vocabulary has upper-case pieces
        lowercase = not any(
            kind == NORMAL and p.lstrip("#") != p.lstrip("#").lower() for p, kind in zip(pieces, types)
        )
    strip = meta.get("tokenizer.ggml.normalizer.strip_accents")
    cls = _need(_ids(meta, "cls_token_id", "bos_token_id"), "CLS", pieces, "[CLS]")
    sep = _need(_ids(meta, "seperator_token_id", "eos_token_id"), "SEP", pieces, "[SEP]")
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added(pieces, types),
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None if strip is None else bool(strip),
                       "lowercase": bool(lowercase)},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": _template(cls, sep, pieces),
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": unk_token, "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


def _restore_mask(meta: dict[str, Any], tokens: list[str], types: list[int]) -> None:
    mask = _ids(meta, "mask_token_id")
    if mask is not None and 0 <= mask < len(tokens) and types[mask] == UNUSED and _PLACEHOLDER.fullmatch(
        tokens[mask]
    ):
        tokens[mask], types[mask] = "<mask>", CONTROL


def _unigram(meta: dict[str, Any], tokens: list[str], types: list[int]) -> dict[str, Any]:
    _restore_mask(meta, tokens, types)
    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    unk = _ids(meta, "unknown_token_id")
    if unk is None:
        unk = next((i for i, kind in enumerate(types) if kind == UNKNOWN), None)
    charsmap = meta.get("tokenizer.ggml.precompiled_charsmap")
    normalizers: list[dict[str, Any]] = []
    if charsmap:
        raw = bytes(int(b) & 0xFF for b in charsmap)
        normalizers.append({"type": "Precompiled",
                            "precompiled_charsmap": base64.b64encode(raw).decode("ascii")})
    if meta.get("tokenizer.ggml.remove_extra_whitespaces", True):  # as SentencePiece and llama.cpp
        normalizers.append({"type": "Replace", "pattern": {"Regex": "^ +| +$"}, "content": ""})
        normalizers.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    prefix = "always" if meta.get("tokenizer.ggml.add_space_prefix", True) else "never"
    cls = _need(_ids(meta, "cls_token_id", "bos_token_id"), "BOS", tokens, "<s>")
    sep = _need(_ids(meta, "seperator_token_id", "eos_token_id"), "EOS", tokens, "</s>")
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": normalizers} if normalizers else None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": _PHANTOM, "prepend_scheme": prefix,
                          "split": True},
        "post_processor": _template(cls, sep, tokens),
        "decoder": {"type": "Metaspace", "replacement": _PHANTOM, "prepend_scheme": prefix,
                    "split": True},
        "model": {"type": "Unigram", "unk_id": unk, "byte_fallback": False,
                  "vocab": [[tok, float(s)] for tok, s in zip(tokens, scores)]},
    }


def tokenizer_json(meta: dict[str, Any]) -> str:
    """``tokenizer.json`` text for the GGUF metadata ``meta``; checked by loading it."""
    from tokenizers import Tokenizer

    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise InvalidInput("the GGUF file has no tokenizer.ggml.tokens")
    tokens = [str(t) for t in tokens]
    types = [int(t) for t in (meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))]
    if kind == "bert":
        data = _wordpiece(meta, tokens, types)
    elif kind == "t5":
        data = _unigram(meta, tokens, types)
    else:
        raise InvalidInput(
            f"tokenizer model {kind!r} is not supported (only WordPiece 'bert' and SentencePiece 't5')"
        )
    text = json.dumps(data, ensure_ascii=False)
    Tokenizer.from_str(text)  # raises on anything tokenizers cannot load
    return text
