"""The benchmark harness: workloads, metrics, baselines and the drain benchmark.

Each benchmark lives in its own module (``drain``, ``backlog``, ...) and
measures through the same :class:`~taskbench.bench.metrics.Recorder`.
Import from the modules themselves; this package imports nothing, so that
``import taskbench.bench.workloads`` stays cheap and optional drivers stay
unloaded.
"""
