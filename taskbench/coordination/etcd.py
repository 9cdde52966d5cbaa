"""EtcdCoordinator: leader election and membership on etcd (Raft), through ``aetcd``.

``etcd://[user:password@]host:port[,host:port,...]?ttl=10&election=leader``

Design rules:

* **One lease per coordinator** with TTL ``ceil(ttl)`` seconds (etcd counts
  whole seconds and may raise a short TTL to its minimum; both only make the
  server's expiry later than our self-fencing deadline, never earlier). It is
  kept alive every ``refresh`` seconds; the leader key and the membership key
  are attached to it, so etcd deletes both when the process stops refreshing.
* **Election by transaction**: the leader key is created only if absent
  (``create_revision == 0``), bound to the lease. The epoch is that key's
  create revision: etcd revisions only grow, so epochs strictly increase from
  one leader to the next, across etcd leader changes too.
* **Followers watch** the leader key from the revision they read, for at most
  ``refresh`` seconds, then read again: a lost watch stream costs one period,
  never a missed handover.
* **Resign** deletes the key if it still carries our value (etcd's own
  ``Election.Resign`` does the same): the next campaigner's watch fires at
  once. ``close`` revokes the lease, dropping the key and membership at once.
* **Failover**: aetcd talks to one endpoint, so the coordinator keeps one
  client per endpoint and moves to the next when a call finds its endpoint
  unreachable (or without a raft leader). Every operation is safe to retry:
  acquiring recognises a key that already carries our value.

Keys: ``{prefix}{election}/leader`` and ``{prefix}{election}/members/{worker_id}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aetcd
from aetcd.transactions import Delete, Get, Put

from taskbench.coordination.base import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TTL_S,
    BaseCoordinator,
    CoordinatorSettings,
    Leadership,
    scrub,
)
from taskbench.errors import (
    ConfigError,
    CoordinatorError,
    CoordinatorUnavailableError,
    SessionExpiredError,
)
from taskbench.urls import redact

T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_PORT = 2379
DEFAULT_PREFIX = "/taskbench/"

_UNREACHABLE = (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, TimeoutError)
"""aetcd errors meaning 'this endpoint cannot serve now': try the next one."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EtcdLocation:
    """What an ``etcd://`` URL names: endpoints and optional credentials."""

    endpoints: tuple[Endpoint, ...]
    username: str | None = None
    password: str | None = None


def parse_etcd_url(url: str) -> EtcdLocation:
    """Endpoints and credentials of ``etcd://[user:pass@]host[:port][,host[:port]...]``."""
    try:
        parts = urlsplit(url)  # not urls.split_url: that checks a single host:port
    except ValueError as exc:
        raise ConfigError(f"malformed etcd URL {redact(url)!r}: {exc}") from None
    if parts.scheme.lower() != "etcd":
        raise ConfigError(f"not an etcd URL: {redact(url)!r}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    endpoints = tuple(_parse_endpoint(text, url) for text in hosts.split(","))
    if not userinfo:
        return EtcdLocation(endpoints)
    username, has_password, password = userinfo.partition(":")
    if not has_password:
        raise ConfigError(f"etcd URL {redact(url)!r}: give both user and password, or neither")
    return EtcdLocation(endpoints, unquote(username), unquote(password))


def _parse_endpoint(text: str, url: str) -> Endpoint:
    host, has_port, port_text = text.strip().rpartition(":") if ":" in text else (text, "", "")
    host = host.strip().strip("[]")
    if not host:
        raise ConfigError(f"etcd URL {redact(url)!r}: empty host in {text!r}")
    if not has_port:
        return Endpoint(host, DEFAULT_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"etcd URL {redact(url)!r}: bad port {port_text!r}")
    return Endpoint(host, int(port_text))


class _Endpoints:
    """One aetcd client per endpoint; a call goes to the current one and fails over."""

    def __init__(self, url: str, location: EtcdLocation, timeout: float) -> None:
        self._url = url
        self._location = location
        self._timeout = timeout
        self._clients: dict[int, aetcd.Client] = {}
        self._current = 0

    async def call(self, operation: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """``operation`` on the current endpoint, then on each other one while unreachable."""
        failures: list[str] = []
        for _ in self._location.endpoints:
            index = self._current
            try:
                return await operation(self._client(index))
            except _UNREACHABLE as exc:
                failures.append(f"{self._location.endpoints[index]}: {exc or type(exc).__name__}")
                self._current = (index + 1) % len(self._location.endpoints)
                log.warning("%s: %s; trying the next endpoint", self._url, failures[-1])
            except aetcd.ClientError as exc:
                raise _translate(exc, self._url, self._location.password) from None
        tried = scrub("; ".join(failures), self._location.password)
        raise CoordinatorUnavailableError(f"cannot reach etcd at {self._url}: {tried}")

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):  # a dead channel may fail to close
                await client.close()

    def _client(self, index: int) -> aetcd.Client:
        if index not in self._clients:
            endpoint = self._location.endpoints[index]
            self._clients[index] = aetcd.Client(
                host=endpoint.host,
                port=endpoint.port,
                username=self._location.username,
                password=self._location.password,
                timeout=self._timeout,
                connect_wait_timeout=max(1, math.ceil(self._timeout)),
            )
        return self._clients[index]


def _translate(exc: Exception, url: str, password: str | None) -> CoordinatorError:
    message = scrub(str(exc) or type(exc).__name__, password)
    if "lease not found" in message:
        return SessionExpiredError(f"etcd at {url}: the lease expired ({message})")
    if isinstance(exc, aetcd.exceptions.UnauthenticatedError):
        return CoordinatorUnavailableError(f"etcd at {url} refused the credentials: {message}")
    return CoordinatorError(f"etcd at {url} failed ({type(exc).__name__}): {message}")


class EtcdCoordinator(BaseCoordinator[int]):
    """Leader election with fencing epochs and membership on an etcd cluster."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL_S,
        refresh: float | None = None,
        safety_margin: float | None = None,
        election: str = "leader",
        worker_id: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        settings = CoordinatorSettings.build(
            ttl=ttl,
            refresh=refresh,
            safety_margin=safety_margin,
            election=election,
            worker_id=worker_id,
            connect_timeout=connect_timeout,
        )
        super().__init__(url, settings)
        self._location = parse_etcd_url(url)
        base = f"{prefix}{settings.election}/".encode()
        self._leader_key = base + b"leader"
        self._members_prefix = base + b"members/"
        self._value = _leader_value(settings.worker_id)
        self._endpoints: _Endpoints | None = None
        self._lease_id: int | None = None

    # -- session ------------------------------------------------------------------

    async def _connect(self) -> None:
        self._endpoints = _Endpoints(self.url, self._location, self.settings.connect_timeout)

    async def _disconnect(self) -> None:
        endpoints, self._endpoints = self._endpoints, None
        if endpoints is not None:
            await endpoints.close()

    async def _start_session(self) -> None:
        await self._end_session()
        lease = await self._call(lambda client: client.lease(math.ceil(self.settings.ttl)))
        self._lease_id = int(lease.id)

    async def _end_session(self) -> None:
        lease_id, self._lease_id = self._lease_id, None
        if lease_id is not None:
            with contextlib.suppress(SessionExpiredError):  # gone, and what it held with it
                await self._call(lambda client: client.revoke_lease(lease_id))

    async def _refresh(self) -> bool:
        lease_id = self._session_lease()
        reply = await self._call(lambda client: client.refresh_lease(lease_id))
        return reply is not None and int(reply.TTL) > 0

    # -- election -----------------------------------------------------------------

    async def _read_leader(self) -> tuple[Leadership | None, int]:
        key = self._leader_key
        found = await self._call(lambda client: client.get_range(key, key + b"\0"))
        holder = _leadership(found[0]) if found else None
        return holder, int(found.header.revision)

    async def _wait_for_change(self, cursor: int) -> None:
        await self._call(lambda client: self._watch_once(client, cursor + 1))

    async def _watch_once(self, client: aetcd.Client, start_revision: int) -> None:
        try:
            event = await client.watch_once(
                self._leader_key, timeout=self.settings.refresh, start_revision=start_revision
            )
        except (aetcd.WatchTimeoutError, aetcd.RevisionCompactedError):
            return  # nothing happened in time, or our cursor is too old: read again
        if isinstance(event, aetcd.RevisionCompactedError):
            return
        if isinstance(event, Exception):
            raise aetcd.ConnectionFailedError(f"watch stream lost: {event}")

    async def _try_acquire(self) -> Leadership | None:
        key, value, lease_id = self._leader_key, self._value, self._session_lease()

        async def create_if_absent(client: aetcd.Client) -> Any:
            return await client.transaction(
                compare=[client.transactions.create(key) == 0],
                success=[Put(key, value, lease_id), Get(key)],
                failure=[Get(key)],
            )

        _, responses = await self._call(create_if_absent)
        found = responses[-1]
        if not found or found[0][0] != value:
            return None
        return _leadership(found[0][1])

    async def _release(self) -> None:
        key, value = self._leader_key, self._value

        async def delete_if_ours(client: aetcd.Client) -> Any:
            return await client.transaction(
                compare=[client.transactions.value(key) == value],
                success=[Delete(key)],
                failure=[],
            )

        await self._call(delete_if_ours)

    # -- membership ---------------------------------------------------------------

    async def _register_member(self) -> None:
        key = self._members_prefix + self.worker_id.encode()
        lease_id = self._session_lease()
        await self._call(lambda client: client.put(key, self.worker_id.encode(), lease=lease_id))

    async def _list_members(self) -> list[str]:
        prefix = self._members_prefix
        found = await self._call(lambda client: client.get_prefix(prefix))
        return [kv.value.decode() for kv in found]

    # -- plumbing -----------------------------------------------------------------

    def _session_lease(self) -> int:
        if self._lease_id is None:
            raise SessionExpiredError(f"etcd at {self.url}: no live lease; a new one is coming")
        return self._lease_id

    async def _call(self, operation: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        if self._endpoints is None:
            raise CoordinatorError(f"{self!r} is not open: await open() or use 'async with'")
        return await self._endpoints.call(operation)


def _leader_value(worker_id: str) -> bytes:
    """The leader key's value: who leads, plus a token only this coordinator knows."""
    return json.dumps({"leader": worker_id, "token": secrets.token_hex(16)}).encode()


def _leadership(kv: Any) -> Leadership:
    try:
        leader = json.loads(kv.value)["leader"]
    except (ValueError, KeyError, TypeError):
        leader = kv.value.decode(errors="replace")
    return Leadership(epoch=int(kv.create_revision), leader_id=str(leader))
