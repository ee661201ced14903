"""Throughput, latency, load time and memory of embedserve (and sentence-transformers) in-process.

Small reusable pieces: :mod:`.timing` (timed calls, percentiles, RSS), :mod:`.engines` (adapters
and timed loaders), :mod:`.runner` (text sets, interleaved runs, rows with ratios, JSON),
:mod:`.table` (rich) and :mod:`.plot` (matplotlib, optional).
"""
