"""A password in a store or coordinator URL never comes out (issue 7, item 5).

Each test runs real operations with a password-bearing URL against a server
that requires it (a throwaway ``redis-server`` with ``requirepass`` on a free
port; the MariaDB test user) or ignores it (PostgreSQL's trust auth), the
same with a wrong password, an unreachable port and malformed URLs (a bad
port, a bad scheme, the password raw or cut by a '#'), and keeps everything
they produce: log records at DEBUG, every exception's str,
repr and chained messages, the CLI's stdout and stderr, the Parquet results
that ``save_run`` and the CLI write. Then
:func:`taskbench.faults.secrets.scan` greps it all: zero occurrences, in any
form (raw, URL-quoted, JSON- or HTML-escaped...). A positive control shows
the scan finds a secret planted in each of those forms. The HTML report and
the executed notebooks are scanned the same way by
``tests/notebooks/test_notebooks.py``, on the report that test builds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from taskbench import Task
from taskbench.bench.drain import run_drain
from taskbench.bench.results import save_run
from taskbench.errors import TaskbenchError
from taskbench.faults.secrets import exception_texts, scan, scan_texts, secret_forms
from taskbench.faults.servers import free_port
from taskbench.model import Outcome
from taskbench.stores import open_store
from tests.backends import SERVER_ENV, all_backends_required, isolated_store_url

ROOT = Path(__file__).resolve().parents[2]


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` (URL-quoted) as its password, keeping the user."""
    parts = urlsplit(url)
    user = parts.username or ""
    location = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{location}"))


def with_port(url: str, port: int | str) -> str:
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}"))


def malformed_urls(url: str, secret: str) -> dict[str, str]:
    """``url`` made malformed with the password in it: given raw (its '@', '/' or '%'
    unquoted), behind a bad scheme, and cut short by a raw '#' after it."""
    parts = urlsplit(url)
    user, rest = parts.username or "", parts.netloc.rpartition("@")[2] + parts.path
    quoted = quote(secret, safe="")
    broken = {
        "bad-scheme": f"a b://{user}:{quoted}@{rest}",
        "hash-after-password": f"{parts.scheme}://{user}:{quoted}#x@{rest}",
    }
    if quoted != secret:  # a password with nothing to quote makes a well-formed URL
        broken["raw-password"] = f"{parts.scheme}://{user}:{secret}@{rest}"
    return broken


class Evidence:
    """Everything the operations produced, written to files for the scan."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def add(self, label: str, text: str) -> None:
        self.count += 1
        path = self.directory / f"{self.count:03d}-{label}.txt"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")

    def failure(self, label: str, error: BaseException) -> None:
        """Every text the exception can show, its formatted traceback too."""
        shown = exception_texts(error) + traceback.format_exception(error)
        self.add(label, "\n".join(shown))


async def expect_failure(evidence: Evidence, label: str, url: str) -> None:
    """Opening ``url`` must fail with our error; keep what it says."""
    with pytest.raises(TaskbenchError) as caught:
        async with open_store(url) as store:
            await store.counts()
    evidence.failure(label, caught.value)


async def exercise(url: str, evidence: Evidence) -> None:
    """Every store call once, on a store opened from ``url``."""
    async with open_store(url) as store:
        evidence.add("store-shown", f"{store!r} {store.url} {store}")
        await store.purge()
        await store.enqueue([Task.new("secret.test", {"n": n}, id=f"s{n}") for n in range(4)])
        held = await store.claim("worker-1", 4, lease_s=30)
        await store.extend([held[0].lease], lease_s=60)
        await store.finish(
            [
                Outcome.succeeded(held[0].lease, {"ok": True}, now=time.time()),
                Outcome.dead(held[1].lease, "boom", now=time.time()),
                Outcome.retry(held[2].lease, "again", run_at=time.time(), now=time.time()),
            ]
        )
        await store.release([held[3].lease])
        await store.requeue_expired()
        await store.requeue_dead()
        evidence.add("tasks", repr(await store.get_many([f"s{n}" for n in range(4)])))
        evidence.add("counts", repr(await store.counts()))
        await store.wait_for_work(0.01)


async def drain_and_save(url: str, evidence: Evidence, results: Path) -> None:
    """A drain benchmark through the library, its result saved as Parquet."""
    result = await run_drain(url, tasks=30, concurrency=3, workload="noop")
    evidence.add("drain", json.dumps(result.to_json_dict()))
    save_run("drain", [result], directory=results)


def run_cli(evidence: Evidence, label: str, results: Path, *args: str) -> int:
    """``taskbench -vvv ARGS`` as a real process; its stdout and stderr kept."""
    done = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", "-vvv", *args],
        cwd=ROOT,
        env={**os.environ, "TASKBENCH_RESULTS_DIR": str(results)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    evidence.add(f"{label}-stdout", done.stdout)
    evidence.add(f"{label}-stderr", done.stderr)
    return done.returncode


def bench_args(url: str, results: Path) -> list[str]:
    sizes = ["--tasks", "20", "--concurrency", "2", "--workload", "noop"]
    return ["bench", "--store", url, *sizes, "--json", "--results-dir", str(results)]


async def exercise_everything(url: str, secret: str, tmp_path: Path) -> tuple[Evidence, Path]:
    """The operations, the benchmark, the CLI and the failures, for one password URL."""
    evidence, results = Evidence(tmp_path / "evidence"), tmp_path / "results"
    await exercise(url, evidence)
    await drain_and_save(url, evidence, results)
    assert run_cli(evidence, "cli", results, *bench_args(url, results)) == 0
    await expect_failure(evidence, "unreachable", with_port(url, free_port()))
    await expect_failure(evidence, "malformed", with_port(url, "99999"))
    for label, broken in malformed_urls(url, secret).items():
        await expect_failure(evidence, label, broken)
        assert run_cli(evidence, f"cli-{label}", results, *bench_args(broken, results)) == 2
    wrong = with_password(url, "Wr0ng-" + secret)
    if url.startswith("postgresql"):  # trust auth takes any password: refuse the database
        missing = urlunsplit(urlsplit(url)._replace(path="/tb_no_such_database"))
        await expect_failure(evidence, "no-database", missing)
    else:
        await expect_failure(evidence, "wrong-password", wrong)
        assert run_cli(evidence, "cli-wrong", results, *bench_args(wrong, results)) == 1
    return evidence, results


def assert_nothing_leaked(
    caplog: pytest.LogCaptureFixture, evidence: Evidence, results: Path, secret: str
) -> None:
    evidence.add("log", caplog.text)
    assert list(results.glob("*.parquet")), "no results file was written: nothing to scan"
    found = scan([evidence.directory, results], [secret, "Wr0ng-" + secret])
    assert not found, "\n".join(map(str, found))


# -- the servers -------------------------------------------------------------------------


def _wait_for_auth(port: int, password: str, process: subprocess.Popen[bytes]) -> None:
    import redis

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            redis.Redis(port=port, password=password, socket_timeout=1).ping()
            return
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not come up")


@contextlib.contextmanager
def started_locked_redis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A throwaway redis-server that requires a password; (its URL with it, the password)."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if all_backends_required():
            pytest.fail(message)
        pytest.skip(message)
    port, password = free_port(), f"Tb!{secrets.token_hex(6)}@p:w/d%"
    config = (
        f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\ndir "{tmp_path}"\n'
        f'requirepass "{password}"\n'
    )
    process = subprocess.Popen([binary, "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert process.stdin is not None
    process.stdin.write(config.encode())  # on stdin: a password never goes on a command line
    process.stdin.close()
    try:
        _wait_for_auth(port, password, process)
        yield f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0?prefix=tbsecret:", password
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with started_locked_redis(tmp_path) as server:
        yield server


@pytest.fixture(params=["redis-requirepass", "mysql", "postgres-trust"])
async def password_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """(a store URL with a password, the password), on a server of each kind."""
    if request.param == "redis-requirepass":
        with started_locked_redis(tmp_path) as server:
            yield server
        return
    async with isolated_store_url(request.param.partition("-")[0], tmp_path) as url:
        password = urlsplit(url).password
        if request.param == "mysql" and not password:
            pytest.fail(f"{SERVER_ENV['mysql']} must carry the test user's password")
        if request.param == "postgres-trust":
            password = f"Pg!{secrets.token_hex(6)}@p:w/d%"
            url = with_password(url, password)
        assert password is not None
        yield url, password


# -- the tests ---------------------------------------------------------------------------


async def test_a_url_password_never_comes_out(
    password_url: tuple[str, str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    url, secret = password_url
    caplog.set_level(logging.DEBUG)
    evidence, results = await exercise_everything(url, secret, tmp_path)
    assert_nothing_leaked(caplog, evidence, results, secret)


async def test_a_coordinator_password_never_comes_out(
    locked_redis: tuple[str, str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from taskbench.coordination import open_coordinator

    url, secret = locked_redis
    url = url.partition("?")[0] + "?ttl=3"
    caplog.set_level(logging.DEBUG)
    evidence = Evidence(tmp_path / "evidence")
    async with open_coordinator(url) as coordinator:
        await coordinator.join()
        evidence.add("leader", repr(await coordinator.campaign()))
        evidence.add("members", f"{coordinator!r} {await coordinator.members()}")
        await coordinator.resign()
    wrong = with_password(url, "Wr0ng-" + secret)
    for label, broken in [
        ("wrong", wrong),
        ("unreachable", with_port(url, free_port())),
        ("etcd-unreachable", f"etcd://root:{quote(secret, safe='')}@127.0.0.1:{free_port()}"),
    ]:
        quick = broken + ("&" if "?" in broken else "?") + "connect_timeout=2"
        with pytest.raises(TaskbenchError) as caught:
            async with open_coordinator(quick):
                pass
        evidence.failure(label, caught.value)
    evidence.add("log", caplog.text)
    found = scan([evidence.directory], [secret, "Wr0ng-" + secret])
    assert not found, "\n".join(map(str, found))


def _env_passwords() -> list[str]:
    """The passwords of the test servers' URLs (what a notebook or a run would carry)."""
    found = (urlsplit(os.environ.get(variable, "")).password for variable in SERVER_ENV.values())
    return sorted({p for p in found if p})


def test_results_and_notebooks_in_the_checkout_carry_no_password() -> None:
    passwords = _env_passwords()
    if not passwords:
        pytest.skip("no test server URL carries a password (see tests/backends.py)")
    places = [ROOT / "data", ROOT / "notebooks"]
    found = scan([p for p in places if p.exists()], passwords)
    assert not found, "\n".join(map(str, found))


# -- the scan finds what is there -----------------------------------------------------------


def test_the_scan_finds_a_secret_in_every_form(tmp_path: Path) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    secret = 'pä"ss<w>@rd/x'
    forms = secret_forms(secret)
    (tmp_path / "plain.log").write_text(f"url redis://:{forms['raw']}@h/0\n")
    (tmp_path / "quoted.txt").write_text(f"redis://:{forms['url-quoted']}@h/0")
    (tmp_path / "notebook.ipynb").write_text(json.dumps({"outputs": [f"pw={secret}"]}))
    (tmp_path / "report.html").write_text(f"<td>{forms['html']}</td>")
    (tmp_path / "log.gz").write_bytes(gzip.compress(f"x {secret} y".encode()))
    (tmp_path / "wide.txt").write_bytes(f"x {secret} y".encode("utf-16-le"))
    pq.write_table(pa.table({"env": [f'{{"url": "{secret}"}}'] * 50}), tmp_path / "run.parquet")
    (tmp_path / "clean.txt").write_text("nothing to see: p***@rd")
    found = {Path(f.path.split(" ")[0]).name for f in scan([tmp_path], [secret])}
    expected = {"plain.log", "quoted.txt", "notebook.ipynb", "report.html", "log.gz", "wide.txt"}
    assert found == expected | {"run.parquet"}


def test_the_scan_of_texts_names_the_secret_by_number_only() -> None:
    found = scan_texts({"message": "login failed for hunter2"}, ["nope", "hunter2"])
    assert [(f.path, f.secret, f.form) for f in found] == [("message", 1, "raw")]
    assert "hunter2" not in str(found[0])
