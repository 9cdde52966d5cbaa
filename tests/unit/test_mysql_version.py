"""Which MariaDB/MySQL servers MySQLStore accepts: the pure version parsing, no server.

``FOR UPDATE SKIP LOCKED`` came in MariaDB 10.6 and MySQL 8.0.1; the store
refuses older servers on open. The strings are real ``SELECT VERSION()``
outputs, plus the "5.5.5-" prefixed form that MariaDB < 11 sends in its
handshake (what PyMySQL's ``get_server_info()`` returns).
"""

from __future__ import annotations

import pytest

from taskbench.errors import ConfigError

pytest.importorskip("pymysql")
from taskbench.stores.mysql import (
    parse_version,
    require_skip_locked,
    supports_skip_locked,
)


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("10.5.23-MariaDB", False),
        ("10.5.99-MariaDB-log", False),
        ("10.6.0-MariaDB", True),
        ("10.11.19-MariaDB-0+deb12u1", True),
        ("5.5.5-10.11.19-MariaDB-0+deb12u1", True),
        ("5.5.5-10.4.32-MariaDB", False),
        ("11.4.2-MariaDB-ubu2404", True),
        ("8.0.0-dmr", False),
        ("8.0.1", True),
        ("8.0.36", True),
        ("8.0.36-0ubuntu0.22.04.1", True),
        ("9.1.0", True),
        ("5.7.44-log", False),
        ("5.6.51", False),
    ],
)
def test_skip_locked_needs_mariadb_10_6_or_mysql_8_0_1(version: str, supported: bool) -> None:
    assert supports_skip_locked(version) is supported


def test_the_handshake_prefix_is_not_read_as_the_version() -> None:
    assert parse_version("5.5.5-10.11.19-MariaDB-0+deb12u1") == (True, (10, 11, 19))
    assert parse_version("5.7.44-log") == (False, (5, 7, 44))


def test_an_old_server_is_refused_naming_the_version_found_and_needed() -> None:
    with pytest.raises(ConfigError) as caught:
        require_skip_locked("10.5.23-MariaDB")
    message = str(caught.value)
    assert "10.5.23-MariaDB" in message
    assert "MariaDB 10.6" in message and "MySQL 8.0.1" in message


def test_a_supported_server_passes() -> None:
    require_skip_locked("10.11.19-MariaDB-0+deb12u1")
    require_skip_locked("8.0.36")


@pytest.mark.parametrize("version", ["", "MariaDB", "ten.six", "10-MariaDB"])
def test_an_unreadable_version_is_a_config_error(version: str) -> None:
    with pytest.raises(ConfigError, match="server version"):
        parse_version(version)
