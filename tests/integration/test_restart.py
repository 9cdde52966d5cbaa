"""Server restarts mid-run: workers reconnect by themselves and nothing acknowledged is lost.

Each test starts its own PostgreSQL, Redis or MariaDB on a free port, runs
two worker subprocesses on it, and restarts the server cleanly twice while
they work (:mod:`taskbench.faults.crash` with ``server_restarts``). No
worker is killed or replaced: the experiment only ends if every worker
notices that no more work is coming and exits 0 by itself, so a store that
never reconnects fails the test (with the worker's log) instead of passing
it. ``store_errors > 0`` shows that the workers really saw the outages.
"""

from __future__ import annotations

import pytest

from taskbench.faults.crash import CrashPlan, run_experiment
from tests.integration.test_crash import assert_accounted, require_server

SERVERS = [
    pytest.param("postgres", "default", id="postgres"),
    pytest.param("redis", "aof-everysec", id="redis"),
    pytest.param("mariadb", "default", id="mariadb"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("server", "setting"), SERVERS)
async def test_workers_ride_out_server_restarts(server: str, setting: str) -> None:
    require_server(server)
    plan = CrashPlan.create(
        server=server,
        setting=setting,
        tasks=200,
        workers=2,
        worker_kills=0,
        server_restarts=2,
        experiment="restart",
        seed=11,
    )

    result = await run_experiment(plan)

    assert_accounted(result)
    assert (result.lost, result.corrupted, result.dead) == (0, 0, 0), result
    assert result.succeeded == result.tasks
    assert result.store_errors > 0, "the workers never saw the server go away"
