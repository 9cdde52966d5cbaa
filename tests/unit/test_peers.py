"""The peers benchmark's parts that need no install and no server.

Running the peers themselves is a benchmark (``taskbench peers``), not a
unit test: here are the JSON line they print, the table, the ratio, the
catalog and the guards that run before anything is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskbench.bench.peers import (
    PEERS,
    PeerResult,
    environment,
    format_table,
    isolation,
    parse_peer_line,
    peer_spec,
    ratio,
)
from taskbench.bench.peers.compare import run_peers
from taskbench.errors import BenchmarkError, ConfigError


def peer_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "peer": "arq",
        "version": "0.28.0",
        "config": "Worker(max_jobs=50, poll_delay=0.01)",
        "tasks": 20000,
        "concurrency": 50,
        "enqueue_s": 1.5,
        "drain_s": 8,
        "drain_tps": 2500.0,
        "completed": 20000,
    }
    record.update(changes)
    return record


def peer_result(**changes: Any) -> PeerResult:
    return parse_peer_line(json.dumps(peer_record(**changes)))


def test_parse_peer_line_reads_every_field() -> None:
    result = parse_peer_line(json.dumps(peer_record()))
    assert result == PeerResult(
        peer="arq",
        version="0.28.0",
        config="Worker(max_jobs=50, poll_delay=0.01)",
        tasks=20000,
        concurrency=50,
        enqueue_s=1.5,
        drain_s=8.0,
        drain_tps=2500.0,
        completed=20000,
    )
    assert isinstance(result.drain_s, float)


def test_parse_peer_line_takes_the_last_json_line_after_logs() -> None:
    first, last = json.dumps(peer_record(tasks=3)), json.dumps(peer_record(tasks=7))
    output = f"INFO worker started\n{first}\nWARNING shutting down\n{last}\n"
    assert parse_peer_line(output).tasks == 7


def test_parse_peer_line_ignores_extra_fields() -> None:
    assert parse_peer_line(json.dumps(peer_record(left_in_queue=0))).completed == 20000


@pytest.mark.parametrize(
    "output",
    [
        "",
        "no json here",
        "{broken",
        json.dumps([1, 2]),
        json.dumps({k: v for k, v in peer_record().items() if k != "drain_tps"}),
        json.dumps(peer_record(tasks="20000")),
        json.dumps(peer_record(completed=True)),
    ],
    ids=["empty", "text", "broken", "array", "missing", "string-int", "bool-int"],
)
def test_parse_peer_line_rejects_bad_output(output: str) -> None:
    with pytest.raises(BenchmarkError):
        parse_peer_line(output)


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [(3000.0, 1500.0, 2.0), (500.0, 2000.0, 0.25), (None, 100.0, None), (10.0, 0.0, None)],
)
def test_ratio_is_ours_over_theirs(
    ours: float | None, theirs: float | None, expected: float | None
) -> None:
    assert ratio(ours, theirs) == expected


def test_a_result_with_ours_knows_its_ratio() -> None:
    result = peer_result(drain_tps=2000.0).with_ours("redis://127.0.0.1:6379/0", 5000.0)
    assert result.ours_store == "redis://127.0.0.1:6379/0"
    assert result.ratio == pytest.approx(2.5)
    assert peer_result().ratio is None


def test_format_table_puts_both_sides_in_one_row() -> None:
    arq = peer_result(drain_tps=2500.0).with_ours("redis://127.0.0.1:6379/0", 10000.0)
    lines = format_table([arq]).splitlines()
    assert len(lines) == 3
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells == [
        "arq",
        "0.28.0",
        "Worker(max_jobs=50, poll_delay=0.01)",
        "2,500",
        "redis://127.0.0.1:6379/0",
        "10,000",
        "4.00x",
    ]


def test_format_table_headers_and_missing_figures() -> None:
    lines = format_table([peer_result(config="a|b")]).splitlines()
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert headers == [
        "peer",
        "version",
        "config",
        "theirs tasks/s",
        "ours",
        "ours tasks/s",
        "ours/theirs",
    ]
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[2] == "a/b"  # a pipe in a config would break the table
    assert cells[4:] == ["n/a", "n/a", "n/a"]
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_unknown_peer_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known peers: huey-fsync"):
        peer_spec("celery")


def test_run_peers_validates_everything_before_installing() -> None:
    urls = {"postgres": "postgresql://u@127.0.0.1/x", "redis": "redis://127.0.0.1/0"}
    with pytest.raises(ConfigError, match="unknown peer 'nope'"):
        run_peers(["huey-fsync", "nope"], tasks=10, concurrency=2, urls=urls, out=print)
    with pytest.raises(ConfigError, match="tasks"):
        run_peers(["arq"], tasks=0, concurrency=2, urls=urls)
    with pytest.raises(ConfigError, match="redis URL"):
        run_peers(["saq"], tasks=10, concurrency=2, urls={})
    with pytest.raises(ConfigError, match="at least one peer"):
        run_peers([], tasks=10, concurrency=2, urls=urls)


def test_every_peer_is_pinned_and_has_its_script() -> None:
    assert set(PEERS) == {"huey-fsync", "huey-nofsync", "pgqueuer", "arq", "saq"}
    for spec in PEERS.values():
        assert spec.script_path.is_file(), spec.script
        assert all("==" in requirement for requirement in spec.requirements), spec.name
        assert spec.server in {"sqlite", "postgres", "redis"}


def test_an_environment_is_reused_only_with_the_same_pins(tmp_path: Path) -> None:
    spec = peer_spec("arq")
    folder = tmp_path / spec.environment
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").touch()
    assert not environment._is_current(folder, spec.requirements)
    (folder / environment.MARKER).write_text("\n".join(spec.requirements) + "\n")
    assert environment._is_current(folder, spec.requirements)
    assert not environment._is_current(folder, (*spec.requirements[:-1], "hiredis==0.0.1"))


def test_peers_root_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(environment.ROOT_VARIABLE, "/srv/peers")
    assert environment.peers_root() == Path("/srv/peers")
    monkeypatch.delenv(environment.ROOT_VARIABLE)
    assert environment.peers_root() == Path("~/.cache/taskbench/peers-venv").expanduser()


def test_isolation_urls() -> None:
    assert isolation.with_redis_db("redis://127.0.0.1:6379/0", 13) == "redis://127.0.0.1:6379/13"
    assert isolation.with_query("redis://h/0", "prefix=p:") == "redis://h/0?prefix=p:"
    assert (
        isolation.with_query("postgresql://h/t?a=1", "schema=s") == "postgresql://h/t?a=1&schema=s"
    )
    assert isolation.fresh_name() != isolation.fresh_name()
    with pytest.raises(ConfigError):
        isolation.with_redis_db("postgresql://h/t", 13)


def test_cleanup_refuses_names_it_did_not_make() -> None:
    with pytest.raises(ConfigError, match="not one of ours"):
        isolation.drop_schema("postgresql://u@127.0.0.1/x", "public")
    with pytest.raises(ConfigError, match="not one of ours"):
        isolation.drop_schema("postgresql://u@127.0.0.1/x", "tb_peers_x; DROP TABLE t")
    with pytest.raises(ConfigError, match="not one of ours"):
        isolation.delete_prefix("redis://127.0.0.1/0", "taskbench:")
