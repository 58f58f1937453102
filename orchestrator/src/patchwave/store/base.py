"""Opening the store: the engine (SQLite pragmas, a private file), the migration on first use, and
transactions that hold a table's write lock from their first statement."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from patchwave.ansible.procs import alive
from patchwave.errors import PatchwaveError
from patchwave.store.migrations import MIGRATIONS
from patchwave.store.schema import SCHEMA_VERSION, metadata, schema_info

LOCK_LEASE = timedelta(minutes=5)


def display_url(url: str) -> str:
    """The store URL as it may be shown anywhere (errors, logs, workbooks, --json): the password
    masked. A URL SQLAlchemy cannot parse is shown by its scheme only, since where the password
    sits in it is unknown."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, sep, _rest = url.partition("://")
        return f"{scheme}://…" if sep else "(unparsable store URL)"


class StoreBase:
    """Opened lazily: nothing (not even an empty SQLite file) exists until the first read or
    write, so that input refused before a cycle starts leaves no trace."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._held: dict[str, tuple[str, threading.Event]] = {}  # cycle id -> (holder token, the renewal's stop)

    @property
    def shown(self) -> str:
        """The URL with its password masked: the only form that leaves this class."""
        return display_url(self.url)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if self.url.startswith("sqlite:///"):
                _private_file(Path(self.url.removeprefix("sqlite:///").partition("?")[0]))
            try:
                engine = create_engine(self.url, future=True)
            except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for a bad URL; its text (and chain) may hold the password, so it is re-raised masked and unchained
                raise PatchwaveError(f"store URL {self.shown!r} is not usable: "
                                     f"{str(exc).replace(self.url, self.shown)}") from None
            if self.url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
            self._engine = engine
            try:
                self._migrate()
            except BaseException:
                self._engine = None
                raise
        return self._engine

    @contextmanager
    def claiming(self, table: Table) -> Iterator[Connection]:
        """A transaction that holds the write lock on `table` from its first statement, so that a
        check-then-insert inside it is atomic: `BEGIN IMMEDIATE` on SQLite, a table lock that
        excludes other writers (readers go on) on PostgreSQL."""
        with self._immediate(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")
            yield conn

    @staticmethod
    @contextmanager
    def _immediate(engine: Engine) -> Iterator[Connection]:
        # the sqlite3 module sends no BEGIN before a SELECT and a plain (deferred) one before the
        # first write; a transaction it finds already begun it leaves alone, and commits it
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    def _engine_or_fail(self) -> Engine:
        if self._engine is None:
            raise PatchwaveError("the store is not open")
        return self._engine

    def _migrate(self) -> None:
        # one transaction that holds the write lock from the start: processes opening a new or
        # old store at the same moment create or upgrade it once, in turn
        with self._immediate(self._engine_or_fail()) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7312026)")  # Patchwave's schema lock
            metadata.create_all(conn)
            version = conn.execute(select(schema_info.c.version)).scalar()
            if version is None:
                conn.execute(insert(schema_info).values(version=SCHEMA_VERSION))
                return
            if version > SCHEMA_VERSION:
                raise PatchwaveError(
                    f"the store has schema version {version}; this Patchwave knows {SCHEMA_VERSION}: upgrade Patchwave")
            if version < SCHEMA_VERSION:
                for step in MIGRATIONS[version - 1:]:
                    step(conn)
                conn.execute(update(schema_info).values(version=SCHEMA_VERSION))

    def rows(self, table: str, since: datetime | None = None, at_least: tuple[str, int] | None = None,
             columns: tuple[str, ...] | None = None, raw: tuple[str, ...] = (), tuples: bool = False,
             latest_per: str | None = None, **equal: Any) -> Any:
        """Stream the rows of one table (as dicts) in id order; `since` filters on its time column,
        `at_least` (column, value) on a numeric one, keyword arguments on equality (or membership).
        `columns` narrows the select; JSON columns named in `raw` come back as their text, for
        callers that decode only the rows they need; `tuples` gives tuples in `columns` order
        (cheaper, for callers that go through millions of rows); `latest_per` (a column) keeps
        only the latest matching row of each value of that column (each host's, say)."""
        from sqlalchemy import func, type_coerce

        chosen = metadata.tables[table]
        names = columns or tuple(chosen.c.keys())
        conditions = []
        if at_least is not None:
            conditions.append(chosen.c[at_least[0]] >= at_least[1])
        stamp = next((chosen.c[c] for c in ("at", "created_at", "started_at") if c in chosen.c), None)
        if since is not None and stamp is not None:
            conditions.append(stamp >= since)
        for column, value in equal.items():
            conditions.append(chosen.c[column].in_(value) if isinstance(value, list | tuple | set)
                              else chosen.c[column] == value)
        order = chosen.c["id"] if "id" in chosen.c else next(iter(chosen.c))
        if latest_per is not None:
            conditions = [order.in_(select(func.max(order)).where(*conditions).group_by(chosen.c[latest_per]))]
        query = select(*(type_coerce(chosen.c[n], Text).label(n) if n in raw else chosen.c[n] for n in names))
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                query.where(*conditions).order_by(order))
            if tuples:
                yield from result
                return
            keys = list(result.keys())
            for row in result:
                yield dict(zip(keys, row, strict=True))


def _private_file(path: Path) -> None:
    """The SQLite store readable by its owner only (it holds every host's packages, findings
    and ticket keys); a missing directory is made private too. SQLite gives its -wal and -shm
    files the permissions of the database file."""
    import contextlib
    import os

    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
            path.parent.chmod(0o700)
        # never open() an existing database file: closing any descriptor of it drops every
        # POSIX lock this process holds on it, through other connections too (SQLite's own
        # warning), and a writer elsewhere may then corrupt it
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as exc:
        raise PatchwaveError(f"the store {path} cannot be created or opened: {exc.strerror or exc}") from None

def runner_alive(runner: str) -> bool:
    """Is the process `host:pid` still running? (Another machine's process counts as alive.)"""
    import socket

    host, _sep, pid = runner.rpartition(":")
    return host != socket.gethostname() or not pid.isdigit() or alive(int(pid))

def primary_key(result: Any) -> Any:
    key = result.inserted_primary_key
    if key is None:
        raise PatchwaveError("the store did not return the new row's id")
    return key[0]

def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # the wait first: switching to WAL needs a lock that a racing process may hold at that moment
    # (seen as "database is locked" when two schedulers opened a new store together)
    cursor.execute("PRAGMA busy_timeout=10000")
    # switching to WAL needs an exclusive lock and sqlite does not wait for it through the busy
    # timeout: when two processes open a new store together, one is refused ("database is
    # locked") while the other switches; it tries again until the store is in WAL mode
    deadline = time.monotonic() + 10
    while str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
