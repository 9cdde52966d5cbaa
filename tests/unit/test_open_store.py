"""open_store(url): schemes, options and the errors for bad URLs; password redaction."""

from __future__ import annotations

import pytest

from taskbench.errors import ConfigError
from taskbench.stores import open_store
from taskbench.stores.memory import MemoryStore
from taskbench.urls import redact


def test_memory_url_opens_a_memory_store() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "malformed URL"),
        ("tasks.db", "malformed URL 'tasks.db': expected scheme://"),
        ("1nvalid://x", "bad scheme"),
        ("postgresql://u:pw@host:notaport/db", "malformed URL"),
        ("mongodb://host/db", "unknown store scheme 'mongodb'; known: mariadb://, memory://"),
        ("memory://?colour=blue", "unknown option 'colour' for MemoryStore; accepted: none"),
    ],
)
def test_bad_urls_raise_config_error_naming_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        open_store(url)


def test_a_password_never_appears_in_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        open_store("postgresql://user:hunter2@host:99999999/db")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("postgresql://me:hunter2@db/x?a=1", "postgresql://me:***@db/x?a=1"),
        ("mysql://me@db/x", "mysql://me@db/x"),
        ("sqlite:///tasks.db", "sqlite:///tasks.db"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
