"""Throwaway database servers for fault experiments: start, crash (kill -9), restart, stop.

What this module owns: starting a private PostgreSQL, Redis or MariaDB
instance on a free loopback port, with its data in a temporary directory and
a chosen durability :class:`Setting`; killing every process of it at once
(a crash, as a power cut would stop it, minus the loss of the OS page cache);
stopping it cleanly; restarting it on the same port and data; and deleting it.

Design rules:

* **Never a shared server.** An instance listens on 127.0.0.1 only, on a port
  picked at run time (bind port 0), keeps its data, socket and log under its
  own directory, and is deleted by :meth:`Server.close` (also at interpreter
  exit, for an instance a crashed caller forgot).
* **A crash kills every process at once.** PostgreSQL is a postmaster plus
  backends that each lead their own process group, so :meth:`Server.kill`
  freezes the postmaster (SIGSTOP: no new children), lists its descendants,
  and SIGKILLs them all; nothing gets to flush a buffer on the way out.
* **Settings are data.** :data:`SETTINGS` names each durability setting of
  each server, the command-line options that make it, and whether an
  acknowledged write is expected to survive a crash of the server *process*
  (``survives_process_crash``) and a power loss (``survives_power_loss``).
  Only the first is measured here: a kill -9 leaves the OS page cache intact.
* **Root is not a server user.** As root, PostgreSQL runs as the ``postgres``
  OS user (which owns the instance's directory) and MariaDB with
  ``--user=root``; as anyone else, both run as that user.
* A missing binary or a server that does not come up raises
  :class:`~taskbench.errors.BenchmarkError` naming what to install or the
  log to read. No password exists: the servers trust loopback logins.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import psutil

from taskbench.errors import BenchmarkError, ConfigError

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
DATABASE = "taskbench"
"""The database the experiments use on PostgreSQL and MariaDB."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One durability setting of one server: how it is made, what it promises."""

    server: str
    name: str
    summary: str
    options: tuple[str, ...] = ()
    """Server command-line options (PostgreSQL ``-c k=v``, Redis ``--k v``, MariaDB
    ``--k=v``) or, for SQLite, the store URL's query string."""
    survives_process_crash: bool
    survives_power_loss: bool


def _settings(*settings: Setting) -> dict[str, Setting]:
    return {setting.name: setting for setting in settings}


SETTINGS: dict[str, dict[str, Setting]] = {
    "sqlite": _settings(
        Setting(
            server="sqlite",
            name="off",
            summary="WAL, synchronous=OFF: no fsync at all",
            options=("synchronous=OFF",),
            survives_process_crash=True,
            survives_power_loss=False,
        ),
        Setting(
            server="sqlite",
            name="normal",
            summary="WAL, synchronous=NORMAL: fsync at checkpoints only",
            options=("synchronous=NORMAL",),
            survives_process_crash=True,
            survives_power_loss=False,
        ),
        Setting(
            server="sqlite",
            name="full",
            summary="WAL, synchronous=FULL: fsync of the WAL at every commit",
            options=("synchronous=FULL",),
            survives_process_crash=True,
            survives_power_loss=True,
        ),
    ),
    "postgres": _settings(
        Setting(
            server="postgres",
            name="default",
            summary="synchronous_commit=on, fsync=on: WAL flushed before a commit returns",
            survives_process_crash=True,
            survives_power_loss=True,
        ),
        Setting(
            server="postgres",
            name="sync-commit-off",
            summary="synchronous_commit=off: a commit returns before its WAL is written",
            options=("-c", "synchronous_commit=off"),
            survives_process_crash=False,
            survives_power_loss=False,
        ),
    ),
    "redis": _settings(
        Setting(
            server="redis",
            name="no-persistence",
            summary="appendonly no, no RDB snapshots: memory only",
            options=("--appendonly", "no"),
            survives_process_crash=False,
            survives_power_loss=False,
        ),
        Setting(
            server="redis",
            name="aof-everysec",
            summary="appendonly yes, appendfsync everysec: write may lag up to ~2 s",
            options=("--appendonly", "yes", "--appendfsync", "everysec"),
            survives_process_crash=False,
            survives_power_loss=False,
        ),
        Setting(
            server="redis",
            name="aof-always",
            summary="appendonly yes, appendfsync always: written and fsynced before the reply",
            options=("--appendonly", "yes", "--appendfsync", "always"),
            survives_process_crash=True,
            survives_power_loss=True,
        ),
    ),
    "mariadb": _settings(
        Setting(
            server="mariadb",
            name="default",
            summary="innodb_flush_log_at_trx_commit=1: redo log fsynced at every commit",
            survives_process_crash=True,
            survives_power_loss=True,
        ),
        Setting(
            server="mariadb",
            name="flush-log-0",
            summary="innodb_flush_log_at_trx_commit=0: redo log written once a second",
            options=("--innodb-flush-log-at-trx-commit=0",),
            survives_process_crash=False,
            survives_power_loss=False,
        ),
    ),
}
"""Server -> setting name -> :class:`Setting`."""

DEFAULT_SETTINGS = {
    "sqlite": "normal",
    "postgres": "default",
    "redis": "aof-everysec",
    "mariadb": "default",
}
"""The setting used when none is named: the store's own default (SQLite, PostgreSQL,
MariaDB) or, for Redis, the persistence its documentation recommends."""

SERVERS = ("postgres", "redis", "mariadb")
"""The servers this module can start (SQLite has no server: a file is enough)."""


def find_setting(server: str, name: str | None = None) -> Setting:
    """The setting ``name`` (default: DEFAULT_SETTINGS) of ``server``, or ConfigError."""
    known = SETTINGS.get(server)
    if known is None:
        raise ConfigError(f"unknown server {server!r}; known: {', '.join(SETTINGS)}")
    name = DEFAULT_SETTINGS[server] if name is None else name
    if name not in known:
        raise ConfigError(f"unknown {server} setting {name!r}; known: {', '.join(known)}")
    return known[name]


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on now (bind port 0, read it, release it)."""
    (port,) = free_ports(1)
    return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nobody listens on now (all bound at once, then
    released, so no two are the same)."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes: Sequence[psutil.Process], timeout: float) -> bool:
    """Wait until every process has exited (a zombie counts as gone); False on timeout."""
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant at once: freeze, list, kill, wait."""
    try:
        root = psutil.Process(pid)
        root.suspend()  # no new children between the listing and the kill
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    if not _wait_gone(family, STOP_TIMEOUT_S):
        raise BenchmarkError(f"processes of pid {pid} survived SIGKILL")


def _binary(names: Sequence[str], install: str, extra_dirs: Sequence[str] = ()) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(extra_dirs))
        if found:
            return found
    raise BenchmarkError(f"{names[0]} is not installed: {install}")


def _postgres_bin_dirs() -> list[str]:
    chosen = os.environ.get("TASKBENCH_PG_BIN")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    return ([chosen] if chosen else []) + found


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


_LIVE: weakref.WeakSet[Server] = weakref.WeakSet()


@atexit.register
def _close_forgotten() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


# -- the servers ------------------------------------------------------------------------


class Server(abc.ABC):
    """One private server instance: ``start()``, ``kill()`` or ``stop()``, ``start()`` again
    (same port, same data), ``close()``.

    Use it as a context manager (``with PostgresServer(setting) as server``):
    it starts on entry and is stopped and deleted on exit, also on error. Its
    directory is made inside ``root`` (default: the system's temporary
    directory) and must be reachable by the server's OS user.
    """

    kind: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, setting: Setting, root: str | os.PathLike[str] | None = None) -> None:
        if setting.server != self.kind:
            raise ConfigError(f"a {self.kind} server cannot take a {setting.server} setting")
        self.setting = setting
        self.root = Path(tempfile.mkdtemp(prefix=f"taskbench-server-{self.kind}-", dir=root))
        self.root.chmod(0o755)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self.starts = 0
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.setting.name!r}, port={self.port})"

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The store URL of this instance (no password: loopback logins are trusted)."""

    @classmethod
    @abc.abstractmethod
    def check_installed(cls) -> None:
        """Raise BenchmarkError naming what to install if a binary is missing."""

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        """Initialise the data directory (first start only), launch, wait until it serves."""
        if self.running:
            return self
        if not self._initialised:
            self._initialise()
            self._initialised = True
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, **self._run_as()
            )
        self._wait_until_ready()
        if self.starts == 0:
            self._prepare()
        self.starts += 1
        return self

    def kill(self) -> None:
        """Crash: SIGKILL every process of the instance at once, and reap them."""
        if self.process is not None and self.process.poll() is None:  # pid still ours
            kill_tree(self.process.pid)
            self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Shut down cleanly (the server's own shutdown signal); kill after a timeout."""
        if not self.running or self.process is None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop (kill if it must) and delete the instance's directory."""
        _LIVE.discard(self)
        try:
            self.stop()
        finally:
            if self.running:
                self.kill()
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                break
            if self._ready():
                return
            time.sleep(POLL_S)
        exited = "exited" if not self.running else "did not answer"
        self.kill()
        raise BenchmarkError(
            f"{self.kind} on port {self.port} {exited}; the end of {self.log_path}:\n"
            + self.log_tail()
        )

    def _run_as(self) -> dict[str, Any]:
        """Popen keyword arguments that drop root, where the server needs it."""
        return {}

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Once, after the first start: create what the experiments need."""

    @abc.abstractmethod
    def _initialise(self) -> None:
        """Create the data directory."""

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    @abc.abstractmethod
    def _ready(self) -> bool:
        """Whether the server accepts and serves requests now."""


class PostgresServer(Server):
    """PostgreSQL from ``initdb``, trust auth on loopback, as the ``postgres`` OS user when root."""

    kind = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back sessions, checkpoint, exit
    OS_USER = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @staticmethod
    def _tool(name: str) -> str:
        return _binary([name], "apt-get install -y postgresql", _postgres_bin_dirs())

    @classmethod
    def check_installed(cls) -> None:
        for name in ("initdb", "postgres", "pg_isready", "createdb"):
            cls._tool(name)

    def _run_as(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        user = pwd.getpwnam(self.OS_USER)
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _initialise(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(self.OS_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        command = [self._tool("initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        command += ["--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"]
        done = subprocess.run(command, capture_output=True, check=False, **self._run_as())
        if done.returncode != 0:
            raise BenchmarkError(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def _command(self) -> list[str]:
        return [
            self._tool("postgres"),
            *("-D", str(self.data_dir), "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}"),
            *("-c", "max_connections=100", "-c", "logging_collector=off"),
            *self.setting.options,
        ]

    def _ready(self) -> bool:
        command = [self._tool("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        probe = subprocess.run([*command, "-U", "postgres", "-t", "1"], check=False)
        return probe.returncode == 0

    def _prepare(self) -> None:
        command = [self._tool("createdb"), "-h", "127.0.0.1", "-p", str(self.port)]
        done = subprocess.run([*command, "-U", "postgres", DATABASE], capture_output=True)
        if done.returncode != 0:
            raise BenchmarkError(f"createdb failed: {done.stderr.decode(errors='replace')}")


class RedisServer(Server):
    """redis-server with no RDB snapshots and the setting's AOF options."""

    kind = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _initialise(self) -> None:
        (self.root / "data").mkdir()

    def _prepare(self) -> None:
        """Nothing: database 0 always exists."""

    @classmethod
    def check_installed(cls) -> None:
        _binary(["redis-server"], "apt-get install -y redis-server")

    def _command(self) -> list[str]:
        binary = _binary(["redis-server"], "apt-get install -y redis-server")
        return [
            binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no"),
            *("--dir", str(self.root / "data"), "--save", "", "--logfile", ""),
            *self.setting.options,
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")  # -LOADING while replaying
        except OSError:
            return False


class MariaDBServer(Server):
    """mariadbd from ``mariadb-install-db``; root logs in over TCP without a password."""

    kind = "mariadb"

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _user_option(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    @staticmethod
    def _install_db() -> str:
        names = ["mariadb-install-db", "mysql_install_db"]
        return _binary(names, "apt-get install -y mariadb-server", ["/usr/bin"])

    @staticmethod
    def _server_binary() -> str:
        names = ["mariadbd", "mysqld"]
        return _binary(names, "apt-get install -y mariadb-server", ["/usr/sbin"])

    @classmethod
    def check_installed(cls) -> None:
        cls._install_db()
        cls._server_binary()

    def _initialise(self) -> None:
        command = [self._install_db()]
        command += ["--no-defaults", f"--datadir={self.data_dir}", *self._user_option()]
        command += ["--auth-root-authentication-method=normal", "--skip-test-db"]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise BenchmarkError(f"mariadb-install-db failed: {output}")

    def _command(self) -> list[str]:
        return [
            self._server_binary(),
            "--no-defaults",
            *(f"--datadir={self.data_dir}", *self._user_option()),
            *(f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve"),
            *(f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'mysqld.pid'}"),
            f"--log-error={self.log_path}",
            *self.setting.options,
        ]

    def _connect(self) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=1
        )

    def _ready(self) -> bool:
        import pymysql

        try:
            connection = self._connect()
        except pymysql.MySQLError:
            return False
        connection.close()
        return True

    def _prepare(self) -> None:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4")
        finally:
            connection.close()


def check_installed(kind: str) -> None:
    """Raise BenchmarkError, naming what to install, if ``kind``'s binaries are missing."""
    cls = SERVER_CLASSES.get(kind)
    if cls is None:
        raise ConfigError(f"{kind} has no server to start; servers: {', '.join(SERVERS)}")
    cls.check_installed()


SERVER_CLASSES: dict[str, type[Server]] = {
    "postgres": PostgresServer,
    "redis": RedisServer,
    "mariadb": MariaDBServer,
}


def server_for(setting: Setting, root: str | os.PathLike[str] | None = None) -> Server:
    """A server of ``setting.server`` with ``setting``, not started yet (``with`` starts it)."""
    cls = SERVER_CLASSES.get(setting.server)
    if cls is None:
        raise ConfigError(f"{setting.server} has no server to start; servers: {', '.join(SERVERS)}")
    return cls(setting, root)


def start_server(setting: Setting, root: str | os.PathLike[str] | None = None) -> Server:
    """A running server with ``setting``; close() it when done."""
    return server_for(setting, root).__enter__()
