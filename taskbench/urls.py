"""Service URLs: parse and check them, turn their query strings into keyword arguments, redact them.

Stores and coordinators are opened from URLs such as
``postgresql://user:secret@127.0.0.1/test?pool_size=8``. This module owns the
rules every backend shares:

* the scheme picks a backend from a registry (:class:`Registry`), importing
  its module only when it is used, and an unknown scheme lists the known ones;
* :func:`split_url` checks every part before a driver sees it: each
  ``host:port`` of the location (a host the socket layer cannot encode, IDNA
  or otherwise, is refused here, not deep in a driver), and the user,
  password and path: no NUL, no lone surrogate, raw or percent-decoded. A
  backend whose path names a file (SQLite) takes the path literally instead:
  any name the file system can hold, non-UTF-8 bytes included
  (:func:`check_file_path`);
* each query-string option becomes a keyword argument of the backend's
  constructor, converted to the type its annotation names; an unknown option
  lists the accepted ones, and a value with a NUL or a lone surrogate is refused;
* a password is never shown: :func:`redact` replaces it with ``***``, malformed
  URLs included, and every URL a backend exposes or writes into a message
  passes through it. A message about a part of a URL quotes that part only if
  the redacted URL shows it anyway.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import ipaddress
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from taskbench.errors import ConfigError, MissingDependencyError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
QUOTE_HINT = "a user name or password holding '/', '?', '#' or '@' must be percent-quoted"


def redact(url: str) -> str:
    """``url`` as safe to show: any password replaced by ``***``; never raises.

    The user information is everything before the *last* ``@`` after ``://``
    (so a password holding a raw ``@``, ``#``, ``/`` or ``?`` is hidden whole,
    even where a URL parser would cut it short); an ``@`` further on (in a
    query) makes it hide more than it must, never less. Characters UTF-8
    cannot encode (a lone surrogate, e.g. a non-UTF-8 byte of a path given on
    the command line) are shown escaped, so the result can always be printed
    or saved.
    """
    if not isinstance(url, str):
        return "<not a URL>"
    head, separator, rest = url.partition("://")
    if not separator:
        head, rest = "", url
    else:
        head += separator
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo and not rest.startswith("/"):
        url = f"{head}{userinfo.partition(':')[0]}:***@{location}"
    return printable(url)


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) backslash-escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(part: str, what: str, shown_url: str) -> str:
    """``what`` and, if the redacted URL shows ``part`` anyway, ``part`` quoted."""
    return f"{what} {part!r}" if part and printable(part) in shown_url else what


def _reason(error: Exception, shown_url: str) -> str:
    """A parser's message, if every value it quotes shows in the redacted URL anyway."""
    text = printable(str(error))
    quoted = re.findall(r"'([^']*)'", text)
    return text if all(q in shown_url for q in quoted) else QUOTE_HINT


def _malformed(url: str, reason: str) -> ConfigError:
    return ConfigError(f"malformed URL {redact(url)!r}: {reason}")


def scheme_of(url: object) -> str:
    """The scheme of ``url``; ConfigError (URL redacted) if there is none or it is bad."""
    if not isinstance(url, str) or "://" not in url:
        shown = repr(redact(url)) if isinstance(url, str) else f"of type {type(url).__name__}"
        raise ConfigError(f"malformed URL {shown}: expected scheme://location[?option=value]")
    scheme = url.partition("://")[0]
    if not _SCHEME.match(scheme):
        raise _malformed(url, "bad scheme: a letter, then letters, digits, '+', '-' or '.'")
    return scheme


def split_url(url: object, *, file_path: bool = False) -> SplitResult:
    """Split ``url`` and check its parts; ConfigError (URL redacted) if any is malformed.

    The location may list several ``host:port`` separated by commas (a cluster).
    With ``file_path`` the path names a file and is checked by :func:`check_file_path`.
    """
    scheme_of(url)
    assert isinstance(url, str)
    error = _error_of(lambda: urlsplit(url))
    if error is not None:
        raise _malformed(url, f"the location does not parse: {_reason(error, redact(url))}")
    parts = urlsplit(url)
    _check_userinfo(url, parts)
    for endpoint in parts.netloc.rpartition("@")[2].split(","):
        _check_endpoint(url, endpoint)
    if file_path:
        check_file_path(parts.path, url)
    else:
        _check_text(url, parts.path, "path")
    return parts


def _error_of(call: Callable[[], object]) -> ValueError | None:
    """The ValueError (UnicodeError included) ``call`` raises, or None.

    Our ConfigError is raised after the ``except`` block, so it carries no
    chained parser error: those quote parts of the URL, a password's among them.
    """
    try:
        call()
    except ValueError as error:
        return error
    return None


def _check_userinfo(url: str, parts: SplitResult) -> None:
    """The user and password: no raw '@' (drivers split it at the first '@' or the
    last), no NUL, no lone surrogate, raw or percent-decoded."""
    userinfo = parts.netloc.rpartition("@")[0]
    if "@" in userinfo:
        raise _malformed(url, f"a raw '@' in the user information ({QUOTE_HINT})")
    user, _, password = userinfo.partition(":")
    _check_text(url, user, "user name")
    if password and _bad_text(password):
        raise _malformed(url, "the password holds a NUL character or a lone surrogate")


def _bad_text(text: str) -> bool:
    """NUL or a lone surrogate in ``text``, raw or percent-decoded."""
    decoded = unquote(text)
    return any("\x00" in t or _SURROGATE.search(t) is not None for t in (text, decoded))


def _check_text(url: str, text: str, what: str) -> None:
    if _bad_text(text):
        shown = _shown(text, f"the {what}", redact(url))
        raise _malformed(url, f"{shown} holds a NUL character or a lone surrogate")


def _check_endpoint(url: str, endpoint: str) -> None:
    """One ``host[:port]``: the port a number in range, the host one a socket can use."""
    error = _error_of(lambda: urlsplit(f"//{endpoint}").port)
    if error is not None:
        shown = redact(url)
        raise _malformed(
            url, f"{_shown(endpoint, 'host and port', shown)}: {_reason(error, shown)}"
        )
    host = urlsplit(f"//{endpoint}").hostname or ""
    if host and not endpoint.startswith("["):
        _check_host(url, host)


def _check_host(url: str, host: str) -> None:
    """A host name as the socket layer would encode it (IDNA), percent-decoded too."""
    shown = _shown(host, "host", redact(url))
    for name in {host, unquote(host)}:
        if _CONTROL.search(name):
            raise _malformed(url, f"{shown}: a space or control character in a host name")
        if _error_of(functools.partial(ipaddress.ip_address, name)) is None:
            continue
        error = _error_of(functools.partial(name.encode, "idna"))
        if error is not None:
            reason = f" ({printable(str(error.__cause__ or error))})" if shown != "host" else ""
            raise _malformed(url, f"{shown} is not a valid host name{reason}")


def check_file_path(path: str, url: str) -> None:
    """A file path taken literally: no NUL, and only surrogates the file system
    encoding maps back to bytes (a non-UTF-8 byte from the command line)."""
    shown = _shown(path, "the file path", redact(url))
    if "\x00" in path:
        raise _malformed(url, f"{shown} holds a NUL character")
    if _error_of(lambda: os.fsencode(path)) is not None:
        raise _malformed(url, f"{shown} holds a lone surrogate no file name can hold")


def _convert(name: str, raw: str, annotation: Any) -> Any:
    if "\x00" in raw or _SURROGATE.search(raw):
        raise ConfigError(f"option {name}: its value holds a NUL character or a lone surrogate")
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
            shown = printable(name)
            raise ConfigError(f"unknown option {shown!r} for {target.__name__}; accepted: {listed}")
        options[name] = _convert(name, raw, hints.get(name, str))
    return options


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a backend class lives, the extra that installs its driver, and whether
    its URL's path names a file (taken literally) rather than a database."""

    module: str
    cls: str
    extra: str | None = None
    file_path: bool = False


class Registry:
    """Scheme -> backend, with lazy imports (the tooz ``get_coordinator`` pattern)."""

    def __init__(self, kind: str, backends: Mapping[str, Backend]) -> None:
        self.kind = kind
        self.backends = dict(backends)

    def _backend(self, url: object) -> Backend:
        scheme = scheme_of(url)
        backend = self.backends.get(scheme.lower())
        if backend is None:
            known = ", ".join(f"{s}://" for s in sorted(self.backends))
            raise ConfigError(f"unknown {self.kind} scheme {scheme!r}; known: {known}")
        return backend

    def resolve(self, url: str) -> tuple[type, SplitResult]:
        """The backend class for ``url`` and its checked parts (ConfigError if malformed)."""
        backend = self._backend(url)
        parts = split_url(url, file_path=backend.file_path)
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
