"""Benchmarks of the backend and the harness its tests share; not imported by the service.

* :mod:`~backend.bench.harness`: child processes, Redis dbs, a loopback image server, report helpers.
* :mod:`~backend.bench.annotator`: the robot annotator (keypoint regions, next click, brush masks).
* :mod:`~backend.bench.load`: ``python -m backend.bench``, the concurrent-annotator load test.
* :mod:`~backend.bench.learning`: ``python -m backend.learning_bench``, learning from corrections.
"""
