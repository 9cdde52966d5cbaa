"""Secrets: find a password in files, results and messages, in whatever form it took.

What this module owns: :func:`scan`, which greps files (and directories,
recursively) for secrets, and :func:`scan_texts` for text held in memory (log
records, exception messages); :func:`exception_texts` gathers everything an
exception can show. The secrets test runs real operations with
password-bearing URLs and greps all they produced with these.

Design rules:

* **Every form a secret takes on its way out.** A password may be printed
  raw, URL-quoted (``%40`` for ``@``, ``+`` or ``%20`` for a space),
  JSON-escaped (a notebook, a ``--json`` line), HTML-escaped (a report),
  Python-escaped (a ``repr``), or in UTF-16. :func:`secret_forms` lists them
  all and each is searched for.
* **Look inside containers.** Parquet pages are compressed, so a result file
  is read with pyarrow and every string or binary cell, column name and
  metadata value is searched; a ``.gz`` file is decompressed first. Anything
  else is searched byte for byte (a SQLite or DuckDB file keeps its text
  uncompressed).
* **A finding never carries the secret.** It names the secret by its index
  and length, the file, the form and where; printing findings is safe.
"""

from __future__ import annotations

import gzip
import html
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from taskbench.errors import MissingDependencyError

PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True, slots=True)
class Finding:
    """Secret number ``secret`` was found in ``path``, in the form ``form``, at ``where``."""

    path: str
    secret: int
    form: str
    where: str

    def __str__(self) -> str:
        return f"{self.path}: secret #{self.secret} ({self.form}) at {self.where}"


def secret_forms(secret: str) -> dict[str, str]:
    """Form name -> the text a secret becomes in it (forms equal to another are dropped)."""
    forms = {
        "raw": secret,
        "url-quoted": quote(secret, safe="", errors="surrogatepass"),
        "url-quoted-plus": quote_plus(secret, safe="", errors="surrogatepass"),
        "json": json.dumps(secret)[1:-1],
        "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "html": html.escape(secret),
        "python-repr": repr(secret)[1:-1],
        "ascii-escaped": ascii(secret)[1:-1],
    }
    unique: dict[str, str] = {}
    for name, text in forms.items():
        if text and text not in unique.values():
            unique[name] = text
    return unique


def _byte_forms(secret: str) -> dict[str, bytes]:
    """The forms as bytes: UTF-8 for each, plus the raw secret in UTF-16."""
    found = {
        name: text.encode("utf-8", "surrogatepass") for name, text in secret_forms(secret).items()
    }
    found["utf-16"] = secret.encode("utf-16-le", "surrogatepass")
    return found


def _check_secrets(secrets: Sequence[str]) -> None:
    if isinstance(secrets, str) or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("secrets must be a sequence of non-empty strings")


def scan_texts(texts: Mapping[str, str], secrets: Sequence[str]) -> list[Finding]:
    """Findings in texts held in memory; ``texts`` maps a label (the 'path') to a text."""
    _check_secrets(secrets)
    findings = []
    for label, text in texts.items():
        for index, secret in enumerate(secrets):
            for form, shown in secret_forms(secret).items():
                at = text.find(shown)
                if at >= 0:
                    findings.append(Finding(label, index, form, f"character {at}"))
    return findings


def scan(paths: Iterable[str | os.PathLike[str]], secrets: Sequence[str]) -> list[Finding]:
    """Findings of ``secrets`` in every file under ``paths`` (files or directories)."""
    _check_secrets(secrets)
    findings: list[Finding] = []
    for path in _files(paths):
        findings += _scan_file(path, secrets)
    return findings


def _files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for given in paths:
        root = Path(given)
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _scan_file(path: Path, secrets: Sequence[str]) -> list[Finding]:
    data = path.read_bytes()
    if data[:4] == PARQUET_MAGIC and data[-4:] == PARQUET_MAGIC:
        return _scan_parquet(path, secrets)
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return _scan_bytes(str(path), data, secrets)


def _scan_bytes(label: str, data: bytes, secrets: Sequence[str]) -> list[Finding]:
    findings = []
    for index, secret in enumerate(secrets):
        for form, shown in _byte_forms(secret).items():
            at = data.find(shown)
            if at >= 0:
                findings.append(Finding(label, index, form, f"byte {at}"))
    return findings


def _scan_parquet(path: Path, secrets: Sequence[str]) -> list[Finding]:
    """Every string or binary cell, column name and metadata value of a Parquet file."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "scanning Parquet needs pyarrow: pip install 'taskbench[notebooks]'"
        ) from None
    table = pq.read_table(path)
    texts = {f"{path} (schema)": str(table.schema)}
    for name in table.column_names:
        for row, value in enumerate(table.column(name).to_pylist()):
            text = _cell_text(value)
            if text:
                texts[f"{path} column {name!r} row {row}"] = text
    return scan_texts(texts, secrets)


def _cell_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return ""


def exception_texts(error: BaseException) -> list[str]:
    """``str`` and ``repr`` of ``error`` and of every exception chained to it
    (``__cause__``, then ``__context__``), each once."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for show in (str, repr):
            try:
                texts.append(show(current))
            except Exception as failure:  # an unprintable message shows nothing
                texts.append(f"<{type(failure).__name__} showing {type(current).__name__}>")
        current = current.__cause__ or current.__context__
    return texts


__all__ = ["Finding", "exception_texts", "scan", "scan_texts", "secret_forms"]
