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


def graph_file(folder: Path, digest: str, quantization: str, device: str = "cpu") -> Path:
    """The fp32 graph serves every device; int8 has a CUDA variant (``int8cuda``)."""
    variant = quantization + ("cuda" if device == "cuda" and quantization != "fp32" else "")
    return folder / "graphs" / f"{digest[:16]}-{variant}-g{GRAPH_FORMAT}.onnx"


def ensure_graph(folder: Path, digest: str, quantization: str = "fp32", device: str = "cpu") -> Path:
    """Path of the graph for this model, variant and device, building (and caching) it if needed."""
    path = graph_file(folder, digest, quantization, device)
    variant = path.name.split("-")[1]
    if not path.exists():
        with _lock:
            if not path.exists():
                save_graph(build_graph(folder, quantization, device=device), path)
                for old in path.parent.glob(f"*-{variant}-g*.onnx"):  # older graph formats
                    if old != path:
                        old.unlink(missing_ok=True)
    return path
