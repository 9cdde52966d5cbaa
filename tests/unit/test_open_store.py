"""open_store(url): schemes, options and the errors for bad URLs; password redaction;
hosts, paths and options refused before a driver sees them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from taskbench.coordination import open_coordinator
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
        ("a b://u:hunter2@h:1/0", "a b://u:***@h:1/0"),
        ("://u:hunter2@h/0", "://u:***@h/0"),
        ("redis://:hunter2#x@h:1/0", "redis://:***@h:1/0"),
        ("redis://u:p@a..b#w/rd?x9@h/0", "redis://u:***@h/0"),
        ("sqlite:///tmp/a:b@c.db", "sqlite:///tmp/a:b@c.db"),
        ("sqlite:////tmp/\udcff.db", "sqlite:////tmp/\\udcff.db"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


SECRET = "hunter2"
BAD_PARTS = [
    ("postgresql://u@a..b:1/db", "host 'a..b' is not a valid host name"),
    ("mysql://u@xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/db", "label too"),
    ("postgresql://u@\ud800:1/db", "is not a valid host name"),
    ("postgresql://u@h%00:1/db", "control character in a host name"),
    ("redis://127.0.0.1:1,a..b:2/0", "host 'a..b'"),
    ("postgresql://u@h:99999/db", "host and port 'h:99999': Port out of range"),
    ("postgresql://u@h/a%00b", "the path '/a%00b' holds a NUL"),
    ("postgresql://u@h/\udcff", "the path"),
    ("postgresql://%00@h/db", "the user name '%00' holds a NUL"),
    (f"mysql://u:{SECRET}%00@h/db", "the password holds a NUL"),
    (f"mysql://us@er:{SECRET}@h/db", "a raw '@' in the user information"),
    (f"redis://:{SECRET}#x@h:1/0", "must be percent-quoted"),
    (f"postgresql://u:{SECRET}@[zz]/db", "'zz' does not appear to be an IPv4 or IPv6"),
    ("sqlite:///x.db?profile=a%00", "option profile: its value holds a NUL"),
]


@pytest.mark.parametrize(("url", "message"), BAD_PARTS)
def test_a_host_path_or_option_no_driver_can_take_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        open_store(url)
    assert SECRET not in str(caught.value)


def test_an_etcd_cluster_url_checks_each_host() -> None:
    with pytest.raises(ConfigError, match=re.escape("host 'b..c' is not a valid host name")):
        open_coordinator("etcd://127.0.0.1:2379,b..c:2379")


def test_a_sqlite_path_is_taken_literally_any_file_name_but_nul(tmp_path: Path) -> None:
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xff%00.db")  # a non-UTF-8 byte
    assert open_store(f"sqlite:///{odd}").url == redact(f"sqlite:///{odd}")
    with pytest.raises(ConfigError, match="holds a NUL character"):
        open_store(f"sqlite:///{tmp_path}/a\x00b.db")
    with pytest.raises(ConfigError, match="a lone surrogate no file name can hold"):
        open_store(f"sqlite:///{tmp_path}/\ud800.db")
