"""The graph builder moved to :mod:`embedserve.store.graph` (one module per idea: families,
embeddings, encoder, positions, heads); these names stay importable from here."""

from __future__ import annotations

from embedserve.store.graph import GRAPH_FORMAT, build_graph, load_weights, save_graph
from embedserve.store.graph.builder import MS, quantize_per_channel

build_bert_graph = build_graph  # the name before other families joined

__all__ = ["GRAPH_FORMAT", "MS", "build_bert_graph", "build_graph", "load_weights",
           "quantize_per_channel", "save_graph"]
