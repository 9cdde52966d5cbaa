"""The one declaration of the tables and indexes of every SQL backend.

The report's first finding was drift: its SQLite store used another toolkit
than the others and had none of their indexes. Here the table and its
indexes are declared once, with SQLAlchemy Core, and each SQL backend
(SQLite, PostgreSQL, MySQL/MariaDB) compiles this declaration with its own
dialect and runs the DDL through its native driver. SQLAlchemy is used only
to declare and compile; no engine or ORM runs on the hot path.

The claim query is ``WHERE status = 'queued' AND run_at <= :now ORDER BY
priority DESC, run_at, seq LIMIT :n``. Its index leads with ``status`` and
then follows that order, so the first rows of the index are the ones to
claim whatever the backlog; where the dialect supports it (PostgreSQL,
SQLite) the index is partial, holding queued rows only, so it stays as small
as the queue. MariaDB has no partial indexes and gets the full index.

MySQL and MariaDB compare ids and lease owners with a binary collation that
does *not* pad: under a PAD SPACE collation (MariaDB's ``utf8mb4_bin``)
``'x' = 'x '`` holds, so a look-alike id would match a task and a duplicate
check would refuse a distinct id. MariaDB spells it ``utf8mb4_nopad_bin``;
MySQL 8.0.17+ ``utf8mb4_0900_bin`` (every 0900 collation is NO PAD). The
declaration carries MariaDB's; ``create_statements("mysql")`` swaps in
MySQL's, ``create_statements("mariadb")`` keeps it. A table created by an
older taskbench keeps its collation (CREATE TABLE IF NOT EXISTS).

The fence table holds one row per store (``name`` = ``FENCE``): the newest
epoch the store issued and the newest a leader's write carried (see
:mod:`taskbench.stores.base`, "Fencing"). It is created, and its row seeded,
by the same DDL, so every backend reads and locks an existing row. Its only
index is the primary key.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Insert,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    insert,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

TASKS_TABLE = "taskbench_tasks"
FENCES_TABLE = "taskbench_fences"
TABLES = (TASKS_TABLE, FENCES_TABLE)
FENCE = "leader"
"""The name of the store's one fence row."""
MARIADB_COLLATION = "utf8mb4_nopad_bin"
MYSQL_COLLATION = "utf8mb4_0900_bin"
"""Binary, NO PAD collations: ids compare byte for byte, trailing spaces included."""

metadata = MetaData()

# A 1 MiB payload needs more than MySQL's 64 KiB TEXT.
_LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# SQLite makes an INTEGER PRIMARY KEY the rowid: the cheapest arrival order.
_Seq = BigInteger().with_variant(Integer(), "sqlite")

tasks = Table(
    TASKS_TABLE,
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("payload", _LongText, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", Double),
    Column("last_error", Text),
    Column("result", _LongText),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    # Ids and lease owners compare byte for byte, as on every other backend
    # (MariaDB's default collation would make "ABC" and "abc" the same task,
    # and utf8mb4_bin "x" and "x "): see the module docstring.
    mysql_collate=MARIADB_COLLATION,
)

fences = Table(
    FENCES_TABLE,
    metadata,
    Column("name", String(64), primary_key=True),
    Column("issued", BigInteger, nullable=False),
    Column("seen", BigInteger, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate=MARIADB_COLLATION,
)

_queued = tasks.c.status == "queued"
_running = tasks.c.status == "running"

Index(
    f"ix_{TASKS_TABLE}_claim",
    tasks.c.status,
    tasks.c.priority.desc(),
    tasks.c.run_at,
    tasks.c.seq,
    postgresql_where=_queued,
    sqlite_where=_queued,
)
Index(
    f"ix_{TASKS_TABLE}_lease",
    tasks.c.status,
    tasks.c.lease_expires_at,
    postgresql_where=_running,
    sqlite_where=_running,
)
Index(f"ix_{TASKS_TABLE}_finished", tasks.c.status, tasks.c.finished_at)
Index(f"uq_{TASKS_TABLE}_id", tasks.c.id, unique=True)

_DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(),
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.dialect(),
    "mariadb": mysql.dialect(),  # the same DDL; only the collation differs
}


def dialect(name: str) -> Dialect:
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"no dialect {name!r}; known: {sorted(_DIALECTS)}") from None


def create_statements(dialect_name: str, *, with_indexes: bool = True) -> list[str]:
    """The DDL, compiled for one dialect, that creates the tables and indexes
    and seeds the fence row.

    Every statement is idempotent (IF NOT EXISTS, an insert that skips an
    existing row). ``with_indexes=False`` leaves out the task table's indexes:
    the report's "before" state, kept reachable for the SQLite legacy profile
    so the study can replay the improvement.
    """
    target = dialect(dialect_name)
    statements = [
        _collated(str(CreateTable(table, if_not_exists=True).compile(dialect=target)), dialect_name)
        for table in (tasks, fences)
    ]
    # The fence row is seeded before the indexes: CREATE INDEX locks the task
    # table even when the index exists, and a leader's fenced write holds the
    # fence row while it needs that table, so the other order can deadlock
    # with a worker opening the store.
    statements.append(_seed_fence(dialect_name))
    if with_indexes:
        for index in sorted(tasks.indexes, key=lambda i: str(i.name)):
            ddl = CreateIndex(index, if_not_exists=True).compile(dialect=target)
            statements.append(str(ddl))
    return [s.strip() for s in statements]


def _collated(ddl: str, dialect_name: str) -> str:
    """The CREATE TABLE with MySQL's no-pad binary collation in place of MariaDB's."""
    if dialect_name != "mysql":
        return ddl
    return ddl.replace(f"COLLATE {MARIADB_COLLATION}", f"COLLATE {MYSQL_COLLATION}")


def _seed_fence(dialect_name: str) -> str:
    """The insert of the fence row at epoch 0, doing nothing if the row exists."""
    row = {"name": FENCE, "issued": 0, "seen": 0}
    if dialect_name == "postgresql":
        seed: Insert = postgresql.insert(fences).values(row).on_conflict_do_nothing()
    elif dialect_name == "sqlite":
        seed = sqlite.insert(fences).values(row).on_conflict_do_nothing()
    else:
        seed = insert(fences).values(row).prefix_with("IGNORE")
    compiled = seed.compile(dialect=dialect(dialect_name), compile_kwargs={"literal_binds": True})
    return str(compiled)


def declared_indexes() -> dict[str, tuple[str, ...]]:
    """Index name -> its columns, as declared (the task table's; the fence
    table has only its primary key).

    The drift test compares this with what each backend's catalog reports.
    """
    return {str(index.name): tuple(col.name for col in index.columns) for index in tasks.indexes}


def declared_tables() -> dict[str, tuple[str, ...]]:
    """Table name -> its column names in order, as declared (for the drift test)."""
    return {name: tuple(column.name for column in metadata.tables[name].columns) for name in TABLES}
