"""The embedding stage: token ids -> ``[batch, seq, hidden]`` after the embedding LayerNorm.

``absolute``/``relative_bias``: word + (position table from ``position_offset`` + token-type 0,
folded into one table); ``rotary``: word + token-type 0 only (positions enter in attention).
token_type_ids are 0 for one segment; ``token_types=True`` (cross-encoders' pairs) adds the
``token_type_ids`` input's rows of the table instead.
"""

from __future__ import annotations

import numpy as np

from embedserve.errors import StoreError
from embedserve.store.family import Family, Shape
from embedserve.store.graph.builder import GraphBuilder
from embedserve.store.graph.weights import Weights


def embed(g: GraphBuilder, fam: Family, shape: Shape, w: Weights, token_types: bool = False) -> str:
    names = fam.embeddings
    word = g.const("word_embeddings", w.get(names["word"] + ".weight"))
    token_type = w.optional(names["token_type"] + ".weight")
    types_table = token_type if token_types else None
    if token_types:
        if token_type is None:
            raise StoreError("model.safetensors has no token type embeddings for sentence pairs")
        token_type = None  # added per token below, not folded
    if fam.positions == "rotary":
        x = g.op("Gather", [word, "input_ids"], axis=0)
        if token_type is not None:
            x = g.op("Add", [x, g.const("token_type_0", token_type[0])])
    else:
        pos_table = w.get(names["position"] + ".weight")[shape.position_offset :]
        if token_type is not None:
            pos_table = pos_table + token_type[0][None, :]
        pos = g.const("position_embeddings", pos_table)
        seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
        zero = g.const("zero_i64", np.array([0], dtype=np.int64))
        pos_slice = g.op("Slice", [pos, zero, seq_len, zero])
        x = g.op("Add", [g.op("Gather", [word, "input_ids"], axis=0), pos_slice])
    if types_table is not None:
        x = g.op("Add", [x, g.op("Gather", [g.const("token_type_embeddings", types_table),
                                             "token_type_ids"], axis=0)])
    return g.layer_norm(x, w.get(names["ln"] + ".weight"), w.get(names["ln"] + ".bias"), "emb_ln",
                        shape.eps)
