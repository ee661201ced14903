"""The ingress's view of the replicas' queues (``embedserve.ray.queues``), read by the same
admission rule as local batchers: refuse before parsing only when every ready queue is full."""

from __future__ import annotations

from embedserve.ray.queues import ReplicaQueues
from embedserve.service.admission import Admission


def sig(replica: str, depth: int, at: float, last_n: int = 2, name: str = "m:latest") -> dict:
    return {"replica": replica, "name": name, "queue_depth": depth, "last_n": last_n,
            "max_queue": 4, "state": "ready", "at": at}


def test_every_replica_full_saturates_and_one_with_room_does_not() -> None:
    now = [100.0]
    queues = ReplicaQueues(clock=lambda: now[0])
    admission = Admission(queues.views)
    assert not admission.saturated()  # nothing heard of yet: never refused up front
    queues.note(sig("a", 4, 99.0))
    assert admission.saturated()  # 4 + 2 > 4 on the only replica
    queues.note(sig("b", 2, 99.0))
    assert not admission.saturated()  # b has room for a request of 2
    queues.note(sig("b", 4, 99.5))
    assert admission.saturated()


def test_the_newest_signal_wins_and_a_silent_replica_stops_counting() -> None:
    now = [100.0]
    queues = ReplicaQueues(clock=lambda: now[0])
    admission = Admission(queues.views)
    queues.note(sig("a", 4, 99.0))
    queues.note(sig("a", 0, 98.0))  # an older report arriving late changes nothing
    assert admission.saturated()
    queues.note_reports([{"id": "a", "at": 99.5, "models": [
        {"name": "m:latest", "state": "ready", "queue_depth": 0, "last_n": 2, "max_queue": 4},
        {"name": "loading:latest", "state": "loading"},  # no queue yet: not a view
    ]}])
    assert [v.depth for v in queues.views()] == [0]
    assert not admission.saturated()
    queues.note(sig("a", 4, 100.0))
    now[0] = 106.0  # nothing heard of a for longer than the board keeps a report: gone
    assert queues.views() == [] and not admission.saturated()


def test_an_unloaded_model_has_no_queue() -> None:
    queues = ReplicaQueues(clock=lambda: 100.0)
    queues.note(sig("a", 4, 99.0))
    queues.note(sig("a", 4, 99.0, name="other:latest"))
    queues.forget("m:latest")
    assert [v.name for v in queues.views()] == ["other:latest"]
