"""Built ONNX graphs, cached in the store beside the weights they came from.

``<model folder>/graphs/<weights sha256[:16]>-<quantization>-g<format>.onnx``: built once per model
and variant (the first load pays for it), keyed by the weights' hash so a changed weight file can
never be served with a stale graph. Writes are atomic (temp file, then rename).
"""

from __future__ import annotations

import threading
from pathlib import Path

from embedserve.store.graph import GRAPH_FORMAT, build_graph, save_graph

_lock = threading.Lock()


def graph_file(folder: Path, digest: str, quantization: str) -> Path:
    return folder / "graphs" / f"{digest[:16]}-{quantization}-g{GRAPH_FORMAT}.onnx"


def ensure_graph(folder: Path, digest: str, quantization: str = "fp32") -> Path:
    """Path of the graph for this model and variant, building (and caching) it if needed."""
    path = graph_file(folder, digest, quantization)
    if not path.exists():
        with _lock:
            if not path.exists():
                save_graph(build_graph(folder, quantization), path)
                for old in path.parent.glob(f"*-{quantization}-g*.onnx"):  # older graph formats
                    if old != path:
                        old.unlink(missing_ok=True)
    return path
