"""Static int8 activation ranges, measured once when an int8 graph is built.

The int8 graph quantizes each weight MatMul's input with constants (:meth:`.builder.GraphBuilder.
int8_matmul`), so a text's vector cannot depend on its batch and no reduction runs per call
(where outlier tokens would leave the other tokens too few steps, it quantizes per row instead:
also batch-invariant, five more ops). The ranges come from here: the model's own fp32 graph (built by :class:`Probe`, which is the int8
graph with float MatMuls: the same FastGelu, the same layout) runs on calibration text, and every
quantized MatMul's input range is recorded (:class:`.builder.Range`: min and max over all real
tokens, and the median token row's max ``|x|``).

Calibration text: the first :data:`DOCS` documents and :data:`QUERIES` queries of the CISI
collection shipped in the package (library-science abstracts and questions: not the STS-B
sentences the int8 tag is scored on), cut to :data:`WINDOW` tokens (~6,000 in all); a graph with a ``token_type_ids``
input (a cross-encoder) sees them as (query, document) pairs, as it will be used. Deterministic:
the same weights always give the same graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from embedserve.store.graph.builder import GraphBuilder, Range

DOCS = 32
QUERIES = 32
WINDOW = 256  # calibration rows are cut here (or at the model's window, if shorter)
BATCH = 16


class Probe(GraphBuilder):
    """Builds the float graph, noting the input of every MatMul the int8 graph quantizes."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}  # weight name -> the tensor its MatMul reads

    def int8_matmul(self, x: str, weight: np.ndarray, name: str) -> str:
        self.inputs[name] = x
        return self.op("MatMul", [x, self.const(name, weight)])


def calibration_rows(tokenizer: Path, max_tokens: int, pairs: bool) -> list[list[int]] | list[tuple[list[int], list[int]]]:
    """Token ids of the calibration text (with segment ids when ``pairs``)."""
    from tokenizers import Tokenizer

    from embedserve.eval.data import load_cisi  # the packaged copy, never a user's folder

    docs, queries, _ = load_cisi()
    doc_texts = list(docs.values())[:DOCS]
    query_texts = list(queries.values())[:QUERIES]
    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_padding()
    tok.enable_truncation(max_length=min(max_tokens, WINDOW))
    if pairs:
        encoded = tok.encode_batch(list(zip(query_texts, doc_texts)))
        return [(e.ids, e.type_ids) for e in encoded]
    return [e.ids for e in tok.encode_batch(doc_texts + query_texts)]


def measure_ranges(model: onnx.ModelProto, inputs: dict[str, str], rows: Sequence,
                   needs: set[str]) -> dict[str, Range]:
    """Run ``model`` (a :class:`Probe` graph) on ``rows`` and return, per weight name, the range
    of the tensor in ``inputs`` over every real token."""
    import onnxruntime as ort

    from embedserve.config import cpu_quota

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = list(inputs)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(inputs[n], TensorProto.FLOAT, None)
                              for n in names)
    so = ort.SessionOptions()
    so.intra_op_num_threads = cpu_quota()
    so.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    lo = np.full(len(names), np.inf, np.float32)
    hi = np.full(len(names), -np.inf, np.float32)
    row_max: list[list[np.ndarray]] = [[] for _ in names]
    ordered = sorted(rows, key=lambda r: len(r[0] if isinstance(r, tuple) else r))
    for i in range(0, len(ordered), BATCH):
        outs = session.run([inputs[n] for n in names], _feeds(ordered[i : i + BATCH], needs))
        lo = np.minimum(lo, [o.min() for o in outs])
        hi = np.maximum(hi, [o.max() for o in outs])
        for k, o in enumerate(outs):
            row_max[k].append(np.abs(o).max(axis=-1))
    return {n: Range(float(a), float(b), float(np.median(np.concatenate(r))))
            for n, a, b, r in zip(names, lo, hi, row_max)}


def _feeds(batch: Sequence, needs: set[str]) -> dict[str, np.ndarray]:
    """One length group holding the whole batch (``split`` = every row)."""
    ids_rows = [r[0] if isinstance(r, tuple) else r for r in batch]
    width = max(len(r) for r in ids_rows)
    ids = np.zeros((len(batch), width), np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for k, r in enumerate(batch):
        seq = r[0] if isinstance(r, tuple) else r
        ids[k, : len(seq)] = seq
        mask[k, : len(seq)] = 1
        if isinstance(r, tuple):
            types[k, : len(seq)] = r[1]
    feeds = {"input_ids": ids, "attention_mask": mask, "split": np.array([len(batch)], np.int64),
             "width_a": np.array([width], np.int64)}
    if "key_mask" in needs:
        feeds["key_mask"] = mask
    if "token_type_ids" in needs:
        feeds["token_type_ids"] = types
    return feeds
