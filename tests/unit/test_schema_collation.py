"""The MySQL/MariaDB DDL compares ids byte for byte, trailing spaces included (issue 7).

Under a PAD SPACE collation (MariaDB's ``utf8mb4_bin``) ``'x' = 'x '`` holds;
each server gets its own NO PAD binary collation instead. The behaviour on a
real MariaDB is checked by tests/integration/test_hostile_input.py
(``test_ids_and_owners_compare_exactly``).
"""

from __future__ import annotations

import pytest

from taskbench.stores.schema import MARIADB_COLLATION, MYSQL_COLLATION, create_statements


@pytest.mark.parametrize(
    ("server", "collation", "not_this"),
    [
        ("mariadb", MARIADB_COLLATION, MYSQL_COLLATION),
        ("mysql", MYSQL_COLLATION, MARIADB_COLLATION),
    ],
)
def test_each_server_gets_its_no_pad_binary_collation(
    server: str, collation: str, not_this: str
) -> None:
    tables = [s for s in create_statements(server) if s.startswith("CREATE TABLE")]
    assert len(tables) == 2
    assert all(f"COLLATE {collation}" in table for table in tables)
    assert not any(not_this in s or "utf8mb4_bin" in s for s in create_statements(server))


def test_the_other_dialects_name_no_collation() -> None:
    for dialect in ("sqlite", "postgresql"):
        assert not any("COLLATE" in s for s in create_statements(dialect))
