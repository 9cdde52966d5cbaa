"""The peers benchmark: the same drain workload through huey, pgqueuer, arq and saq.

Each peer runs in a pinned virtual environment of its own, as a subprocess
executing one small script of this package (``huey_drain.py``,
``pgqueuer_drain.py``, ``arq_drain.py``, ``saq_drain.py``: stdlib plus the
peer library, one JSON line out). taskbench runs the same workload on the
comparable store in the same run, and :func:`format_table` puts the two side
by side. See ``docs/benchmarks/peers.md`` for each peer's configuration and
the figures measured.

The drain scripts are not imported here: they are run by file path with the
peers' Python, never the project's.
"""

from __future__ import annotations

from taskbench.bench.peers.catalog import PEERS, PeerSpec, peer_spec
from taskbench.bench.peers.compare import DEFAULT_URLS, run_peers
from taskbench.bench.peers.report import PeerResult, format_table, parse_peer_line, ratio

__all__ = [
    "DEFAULT_URLS",
    "PEERS",
    "PeerResult",
    "PeerSpec",
    "format_table",
    "parse_peer_line",
    "peer_spec",
    "ratio",
    "run_peers",
]
