"""The ONNX Runtime engine: one session per model, pooled vectors out.

Threads come from the process's CPU quota (affinity and cgroup), never the host's core count.
Padding is per batch: the batch is padded to its own longest sequence, and the graph's dense
layers skip the padding altogether. Attention pads in two groups: the batch's rows sorted by
length, the shorter ones padded only to their own longest (``attention_split``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedserve.config import cpu_quota
from embedserve.engine.base import EngineInfo
from embedserve.engine.tokenizer import TextTokenizer
from embedserve.errors import EngineError


def session_options(threads: int | None = None):  # type: ignore[no-untyped-def]
    """ONNX Runtime options, the same for the library and the server.

    Intra-op threads spin-wait *during* a run (between its ~100 operators; parking them there made
    a batch of 32 short texts 10-15 % slower and one text ~1 ms slower) and stop spinning as soon
    as the run returns (``session.force_spinning_stop``), so between batches they leave the cores
    to the server's event loop and to clients on the same machine. Measured on 2 cores against
    never spinning (BENCHMARKS.md): server 32 clients x 1 text +12 %, 1 x 1 p50 -1 ms.

    ``session.x64quantprecision``: on x86 CPUs without VNNI (AVX2 only) onnxruntime's fast u8 x s8
    kernel adds pairs of products in int16 and saturates; its exact path keeps the int8 graph's
    integer products exact, so an int8 tag gives the same vectors on every x86 CPU. It costs the
    int8 tag 13 % of its throughput on such a CPU (BENCHMARKS.md); VNNI kernels never saturate.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    so.add_session_config_entry("session.force_spinning_stop", "1")
    so.add_session_config_entry("session.x64quantprecision", "1")
    so.intra_op_num_threads = threads or cpu_quota()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def providers(device: str = "auto", available: Sequence[str] | None = None) -> list[str]:
    """Execution providers for ``EMBEDSERVE_DEVICE``: ``cpu`` -> CPU only; ``cuda`` -> CUDA first
    (an :class:`EngineError` if this onnxruntime has no CUDA EP: the CPU wheel, not
    ``onnxruntime-gpu``); ``auto`` -> CUDA when the EP is there, else CPU."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise EngineError(f"unknown device {device!r} (auto, cpu or cuda)")
    has_cuda = CUDA in available
    if device == "cuda" and not has_cuda:
        raise EngineError(
            "EMBEDSERVE_DEVICE=cuda, but this onnxruntime has no CUDA execution provider "
            f"(it has: {', '.join(available) or 'none'}); install the GPU build: "
            "pip install 'embedserve[gpu]' (onnxruntime-gpu, in place of onnxruntime)"
        )
    if device == "cpu" or not has_cuda:
        return [CPU]
    return [CUDA, CPU]


def graph_device(chosen: Sequence[str]) -> str:
    """Which graph variant the providers run: ``cuda`` when CUDA comes first, else ``cpu``."""
    return "cuda" if chosen and chosen[0] == CUDA else "cpu"


def pad_batch(batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the batch's own longest sequence: (input_ids, attention_mask), int64."""
    n = len(batch)
    width = max(len(ids) for ids in batch)
    ids = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def attention_split(lengths: Sequence[int]) -> int:
    """For ascending ``lengths``: how many of the first rows to pad only to ``lengths[k - 1]`` (the
    rest pad to the longest) so that attention pads the fewest slots, ``k*L[k-1] + (n-k)*L[-1]``.
    ``k == n``: one group (preferred on a tie)."""
    n = len(lengths)
    longest = lengths[-1]
    return min(range(n, 0, -1), key=lambda k: k * lengths[k - 1] + (n - k) * longest)


class OnnxEngine:
    def __init__(
        self,
        graph: Path,
        tokenizer: TextTokenizer,
        info: EngineInfo,
        *,
        threads: int | None = None,
        device: str = "auto",
    ) -> None:
        import onnxruntime as ort

        self.info = info
        self.tokenizer = tokenizer
        self.threads = threads or cpu_quota()
        chosen = providers(device)
        try:
            self._session = ort.InferenceSession(
                str(graph), sess_options=session_options(self.threads), providers=chosen
            )
        except Exception as err:  # onnxruntime raises its own types
            raise EngineError(f"cannot load {graph}: {err}") from err
        if device == "cuda" and CUDA not in self._session.get_providers():
            raise EngineError(  # onnxruntime-gpu falls back to CPU when no GPU or driver answers
                "EMBEDSERVE_DEVICE=cuda, but the CUDA execution provider did not start "
                "(no GPU, or no CUDA/cuDNN libraries onnxruntime-gpu can load)"
            )
        self.device = graph_device(self._session.get_providers())
        self._run = self._session.run

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True) -> list[list[int]]:
        return self.tokenizer.encode(texts, truncate=truncate)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.spans(text)

    def extra_feeds(self, rows: list[Sequence[int]], ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Inputs beyond ids, mask and the attention split (heads that take more override this)."""
        return {}

    def run_sorted(
        self, batch: Sequence[Sequence[int]], outputs: list[str]
    ) -> tuple[list[int], list[Sequence[int]], list[np.ndarray]]:
        """Run the graph on ``batch`` sorted by length: (order, sorted rows, outputs in that order)."""
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        rows = [batch[i] for i in order]
        split = attention_split([len(r) for r in rows])
        ids, mask = pad_batch(rows)
        feeds = {
            "input_ids": ids,
            "attention_mask": mask,
            "split": np.array([split], np.int64),
            "width_a": np.array([len(rows[split - 1])], np.int64),
            **self.extra_feeds(rows, ids, mask),
        }
        try:
            return order, rows, self._run(outputs, feeds)
        except Exception as err:
            raise EngineError(f"inference failed: {err}") from err

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        order, _, (out,) = self.run_sorted(batch, ["pooled"])
        return unsort(out, order)

    def embed_tokens(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Un-normalised last hidden state per input, ``(len(ids) - 2, dim)``: [CLS] and the final
        [SEP] are dropped, so row k is the k-th text token (``token_spans`` order)."""
        if not batch:
            return []
        order, rows, (packed,) = self.run_sorted(batch, ["tokens"])
        return self.token_vectors(order, rows, packed)

    def embed_both(self, batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`embed_ids` and :meth:`embed_tokens` of ``batch`` from one run of the graph (it
        has both outputs; the pooled vectors are bitwise those :meth:`embed_ids` gives)."""
        if not batch:
            return np.zeros((0, self.info.dim), dtype=np.float32), []
        order, rows, (pooled, packed) = self.run_sorted(batch, ["pooled", "tokens"])
        return unsort(pooled, order), self.token_vectors(order, rows, packed)

    def token_vectors(
        self, order: list[int], rows: list[Sequence[int]], packed: np.ndarray
    ) -> list[np.ndarray]:
        """The graph's packed ``tokens`` output of the sorted ``rows``, per input in the caller's
        order, as :meth:`embed_tokens` returns them."""
        parts = np.split(packed, np.cumsum([len(r) for r in rows])[:-1])
        out: list[np.ndarray] = [np.empty(0)] * len(order)
        for k, i in enumerate(order):
            out[i] = self.kept_tokens(parts[k], rows[k])
        return out

    def kept_tokens(self, vectors: np.ndarray, row: Sequence[int]) -> np.ndarray:
        """Of one input's token vectors, those the model scores with: all but [CLS] and the final
        [SEP]."""
        return vectors[1:-1]


def unsort(out: np.ndarray, order: list[int]) -> np.ndarray:
    """Rows computed in ``order`` back in the caller's order."""
    if order == list(range(len(order))):
        return out
    unsorted = np.empty_like(out)
    unsorted[order] = out
    return unsorted
