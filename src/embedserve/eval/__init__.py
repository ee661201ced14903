"""Evaluation data loaders and metrics; works with any encoder (``encode(list[str]) -> ndarray``)."""
