"""Service URLs: parse them, turn their query strings into keyword arguments, redact them.

Stores and coordinators are opened from URLs such as
``postgresql://user:secret@127.0.0.1/test?pool_size=8``. This module owns the
rules every backend shares:

* the scheme picks a backend from a registry (:class:`Registry`), importing
  its module only when it is used, and an unknown scheme lists the known ones;
* each query-string option becomes a keyword argument of the backend's
  constructor, converted to the type its annotation names; an unknown option
  lists the accepted ones;
* a password is never shown: :func:`redact` replaces it with ``***``, and
  every URL a backend exposes or writes into a message passes through it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from taskbench.errors import ConfigError, MissingDependencyError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (never raises)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable URL>"


def split_url(url: object) -> SplitResult:
    """Split ``url``; raise ConfigError (with the URL redacted) if it is malformed.

    The location may list several ``host:port`` separated by commas (a cluster).
    """
    if not isinstance(url, str) or "://" not in url:
        shown = redact(url) if isinstance(url, str) else repr(url)
        raise ConfigError(f"malformed URL {shown!r}: expected scheme://location[?option=value]")
    scheme = url.partition("://")[0]
    if not _SCHEME.match(scheme):
        raise ConfigError(f"malformed URL {redact(url)!r}: bad scheme {scheme!r}")
    try:
        parts = urlsplit(url)
        for endpoint in parts.netloc.rpartition("@")[2].split(","):
            _ = urlsplit(f"//{endpoint}").port  # validates each host:port of a cluster URL
    except ValueError as exc:
        raise ConfigError(f"malformed URL {redact(url)!r}: {exc}") from None
    return parts


def _convert(name: str, raw: str, annotation: Any) -> Any:
    options = typing.get_args(annotation) if isinstance(annotation, UnionType) else (annotation,)
    kinds = [t for t in options if t is not type(None)]
    kind = kinds[0] if kinds else str
    try:
        if kind is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")
        if kind in (int, float, str):
            return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"option {name}={raw!r} is not a valid {kind.__name__}: {exc}") from None
    return raw


def options_for(target: type, query: str) -> dict[str, Any]:
    """Keyword arguments for ``target``'s constructor from a URL query string."""
    hints = typing.get_type_hints(target.__init__)  # type: ignore[misc]
    params = inspect.signature(target).parameters
    accepted = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    options: dict[str, Any] = {}
    for name, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in accepted:
            listed = ", ".join(accepted) or "none"
            raise ConfigError(f"unknown option {name!r} for {target.__name__}; accepted: {listed}")
        options[name] = _convert(name, raw, hints.get(name, str))
    return options


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a backend class lives, and the extra that installs its driver."""

    module: str
    cls: str
    extra: str | None = None


class Registry:
    """Scheme -> backend, with lazy imports (the tooz ``get_coordinator`` pattern)."""

    def __init__(self, kind: str, backends: Mapping[str, Backend]) -> None:
        self.kind = kind
        self.backends = dict(backends)

    def resolve(self, url: str) -> tuple[type, SplitResult]:
        parts = split_url(url)
        backend = self.backends.get(parts.scheme.lower())
        if backend is None:
            known = ", ".join(f"{s}://" for s in sorted(self.backends))
            raise ConfigError(f"unknown {self.kind} scheme {parts.scheme!r}; known: {known}")
        try:
            module = importlib.import_module(backend.module)
        except MissingDependencyError:
            raise
        except ImportError as exc:
            extra = backend.extra or ""
            raise MissingDependencyError(
                f"{parts.scheme}:// needs {exc.name or 'a driver'}: "
                f"pip install 'taskbench[{extra}]'"
            ) from None
        return getattr(module, backend.cls), parts

    def open(self, url: str, **overrides: Any) -> Any:
        """Construct the backend for ``url``; query options become keyword arguments."""
        cls, parts = self.resolve(url)
        options = options_for(cls, parts.query)
        options.update(overrides)
        location = url.partition("#")[0].partition("?")[0]
        return cls(location, **options)
