"""The Prometheus text exposition written by hand."""

from __future__ import annotations

from embedserve.service.metrics import Counter, Gauge, Histogram, Metrics


def test_histogram_is_cumulative_with_inf_sum_and_count() -> None:
    h = Histogram("lat_seconds", "latency", (0.1, 1.0), ("path",))
    for v in (0.05, 0.5, 0.5, 5.0):
        h.observe(v, ("/a",))
    lines = h.render()
    assert lines[:2] == ["# HELP lat_seconds latency", "# TYPE lat_seconds histogram"]
    assert 'lat_seconds_bucket{path="/a",le="0.1"} 1' in lines
    assert 'lat_seconds_bucket{path="/a",le="1"} 3' in lines
    assert 'lat_seconds_bucket{path="/a",le="+Inf"} 4' in lines
    assert 'lat_seconds_sum{path="/a"} 6.05' in lines
    assert 'lat_seconds_count{path="/a"} 4' in lines


def test_counter_gauge_and_label_escaping() -> None:
    c = Counter("reqs_total", "requests", ("path",))
    c.inc(2, ('we"ird\\',))
    assert 'reqs_total{path="we\\"ird\\\\"} 2' in c.render()
    assert Counter("plain_total", "x").render()[-1] == "plain_total 0"
    g = Gauge("depth", "queue", ("model",), collect=lambda: [(("m",), 3.0)])
    assert g.render()[-1] == 'depth{model="m"} 3'


def test_batch_observation() -> None:
    m = Metrics()
    m.observe_batch("m", [3, 5, 9])
    text = m.render()
    assert 'embedserve_batch_real_tokens_total{model="m"} 17' in text
    assert 'embedserve_batch_padded_tokens_total{model="m"} 27' in text
    assert 'embedserve_batch_size_count{model="m"} 1' in text
    assert text.endswith("\n")
