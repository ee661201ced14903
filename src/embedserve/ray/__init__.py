"""Scale-out on Ray: the same HTTP API as Ray Serve replicas, and corpus embedding with Ray Data.

Nothing outside this room imports ray (the ``[ray]`` extra); the room wraps today's service objects:

* ``replica.py`` — one Serve replica: a :class:`~embedserve.service.manager.ModelManager` and its
  batchers (token budget, length sorting, patience), exactly as ``serve`` runs them in one process.
* ``remote.py`` — what the ingress's routes see instead of a local manager: the same shape, each
  model call sent to a replica that holds the model (Serve model multiplexing).
* ``board.py`` — a small deployment where replicas post what they hold; ``/health``, ``/api/ps``
  and ``/metrics`` read it, and ``/api/delete`` / ``/api/pull`` post unloads through it.
* ``app.py`` — the Serve application graph (ingress running :func:`create_app`, replicas, board).
* ``cluster.py`` — joining or starting Ray, and what the cluster looks like.
* ``serving.py`` — ``embedserve serve --ray``.
* ``corpus.py`` — ``embedserve embed --ray``: sharded, resumable Ray Data job.
"""
