"""The store: every scan, decision, wave and host result, appended with timestamps.

SQLAlchemy 2 Core; a SQLite file by default, any SQLAlchemy URL through --store/PATCHWAVE_STORE.
This is the only module that speaks SQL. Rows are never updated except a cycle's or wave's
status; history is what trends and mean-time-to-patch are computed from.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from patchwave.errors import PatchwaveError
from patchwave.models import Changelog, Decision, Manifest, PendingUpdate
from patchwave.procs import alive

SCHEMA_VERSION = 10
metadata = MetaData()

schema_info = Table("schema_info", metadata, Column("version", Integer, nullable=False))

cycles = Table(
    "cycles", metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(32), nullable=False),
    Column("inventory", Text, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("manifest", JSON),
    Column("options", JSON),  # schema 3: targeted hosts, policy dir, advisories, forced window
)

scans = Table(
    "scans", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id")),
    Column("host", String(255), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # scan | confirm
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("result", JSON, nullable=False),
)

pending = Table(
    "pending_updates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scan_id", Integer, ForeignKey("scans.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("installed", String(255)),
    Column("candidate", String(255), nullable=False),
    Column("source", String(255), nullable=False),
    Column("security", Boolean, nullable=False),
    Column("held", Boolean, nullable=False),
    Column("new_install", Boolean, nullable=False),
    Column("ecosystem", String(64)),  # schema 10: the host's OSV ecosystem (Debian:12), from its os-release
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("installed", String(255)),
    Column("version", String(255), nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("advisories", JSON, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("cves", JSON),  # schema 2
    Column("published", String(32)),  # schema 2
    Column("sla_due", String(32)),  # schema 4: published + the policy's SLA days for the severity
    Column("ecosystem", String(64)),  # schema 10: the release of the host it was made for (catch-ups carry per release)
)

changelogs = Table(
    "changelogs", metadata,  # schema 10: what a staged package's changelog says (from the stage result)
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("version", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("urgency", String(16)),  # the most urgent entry's; none when no entry gives one
    Column("cves", JSON, nullable=False),
    Column("versions", JSON, nullable=False),  # the versions of the entries read
)

waves = Table(
    "waves", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("hosts", JSON, nullable=False),
    Column("status", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("gate", JSON),
)

host_results = Table(
    "host_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False, index=True),
    Column("stage", String(32), nullable=False),  # stage | deploy | confirm
    Column("wave", Integer),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("unreachable", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False),
)

end_states = Table(
    "end_states", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("state", String(32), nullable=False),
    Column("packages", JSON, nullable=False),
    Column("detail", Text, nullable=False),
)

cycle_locks = Table(
    "cycle_locks", metadata,  # schema 3: one orchestrator drives a cycle at a time
    Column("cycle_id", String(64), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("holder", String(64), nullable=False, server_default=""),  # schema 9: who, as a random token
    Column("lease_until", DateTime(timezone=True)),  # schema 9: renewed while the holder runs
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
)

runs = Table(
    "runs", metadata,  # schema 4: one row per ansible-runner invocation
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), index=True),
    Column("ident", String(128), nullable=False),
    Column("playbook", Text, nullable=False),
    Column("hosts", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("seconds", Float),  # wall time of the invocation, handler time included
    Column("handler_seconds", Float),  # spent in Patchwave's event handling (store writes, display)
    Column("status", String(32), nullable=False),  # running | successful | failed | timeout | canceled
    Column("rc", Integer),
)

task_events = Table(
    "task_events", metadata,  # schema 4: each host's task results, written as they arrive
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("host", String(255), nullable=False),
    Column("task", Text, nullable=False),
    Column("action", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # ok | changed | failed | unreachable
    Column("message", Text, nullable=False),
)

approvals = Table(
    "approvals", metadata,  # schema 4: manual approval gates, who decided and when
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("wave", Integer, nullable=False),
    Column("wave_name", String(64), nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("by", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("comment", Text, nullable=False),
)


assessments = Table(
    "assessments", metadata,  # schema 5: one baseline assessment of one host
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False, index=True),  # one `patchwave assess` run
    Column("host", String(255), nullable=False, index=True),
    Column("baseline", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # assess | confirm (after remediation)
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),  # the host was assessed
    Column("unreachable", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("score", Float),  # % passing of the applicable rules, exceptions not counted
    Column("score_with_exceptions", Float),  # excepted rules counted as passing
    Column("snapshot", JSON),
    Column("drift", JSON),
)

rule_results = Table(
    "rule_results", metadata,  # schema 5: every rule's result with its evidence
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("assessment_id", Integer, ForeignKey("assessments.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("rule_id", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False, index=True),  # trends read the critical ones
    Column("criticality", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("duration", Float),
    Column("exception_id", String(64)),
)

# the history of one rule on one host, in order: what status_changes() walks
Index("ix_rule_results_history", rule_results.c.severity, rule_results.c.host, rule_results.c.rule_id,
      rule_results.c.assessment_id, rule_results.c.status)

remediations = Table(
    "remediations", metadata,  # schema 5: what a remediation changed (or would change) on a host
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False, index=True),
    Column("host", String(255), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("check_mode", Boolean, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("changed", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False),
)


outbox = Table(
    "outbox", metadata,  # schema 6: every notification and ticket call, written before it is sent
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),  # idempotency key: one row per message, ever
    Column("channel", String(64), nullable=False),
    Column("route", String(64), nullable=False),
    Column("event", String(32), nullable=False),
    Column("op", String(16), nullable=False),  # send, or for tickets: open, update, close, check
    Column("ticket", String(255)),  # tickets.key for ticket operations
    Column("severity", String(16), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", JSON, nullable=False),  # the event's data; never a secret (those are read when sending)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # pending, sent, failed (gave up), skipped
    Column("attempts", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("result", JSON),
    Column("claimed_by", String(320)),  # schema 9: the flusher sending it (host:pid:token, status `sending`) ...
    Column("claimed_until", DateTime(timezone=True)),  # ... until then; after that it is pending again
)
Index("ix_outbox_due", outbox.c.status, outbox.c.next_at)

tickets = Table(
    "tickets", metadata,  # schema 6: one ticket per host and rule (or host and failed cycle) and channel
    Column("key", String(255), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # rule or patch
    Column("host", String(255), nullable=False),
    Column("subject", String(255), nullable=False),  # the rule id or the cycle id
    Column("external_id", String(128)),  # the ticket system's key (OPS-12, an incident sys_id)
    Column("number", String(128)),  # what people call it (OPS-12, INC0010001)
    Column("state", String(16), nullable=False),  # opening, open, closing, closed
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("reopened", Integer, nullable=False),  # times found closed in the ticket system while still failing
    Column("note", Text, nullable=False),
)


assets = Table(
    "assets", metadata,  # schema 7: every host any discovery saw, as it was last seen in the inventory
    Column("host", String(255), primary_key=True),
    Column("inventory", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_discovered", DateTime(timezone=True), nullable=False),
    Column("gone_at", DateTime(timezone=True)),
    Column("groups", JSON, nullable=False),
    Column("device_type", String(64), nullable=False),
    Column("owner", String(255), nullable=False),
)

asset_events = Table(
    "asset_events", metadata,  # schema 7: new, gone, returned, changed — and the new-device decision
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("host", String(255), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("decision", String(16)),  # observe, remediate-now, patch-now, next-cycle (new hosts)
    Column("done_at", DateTime(timezone=True)),  # when the decision was carried out
    Column("outcome", Text),
)

schedule_runs = Table(
    "schedule_runs", metadata,  # schema 7: one row per job and slot, written before the job starts
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False),
    Column("slot", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running, ok, failed, skipped
    Column("runner", String(255), nullable=False),  # host:pid of the process that runs it
    Column("detail", JSON, nullable=False),
    UniqueConstraint("job", "slot", name="uq_schedule_runs_slot"),
)


agent_tokens = Table(
    "agent_tokens", metadata,  # schema 8: hosts that deliver their own results (agent mode)
    Column("host", String(255), primary_key=True),
    Column("token_sha256", String(64), nullable=False),  # the token itself is shown once and never stored
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def _add_column(conn: Any, table: str, column: str, kind: str) -> None:
    # create_all() has already made any table missing from an old store in its current shape
    from sqlalchemy import inspect

    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _v1_to_v2(conn: Any) -> None:
    """Decisions record the CVE ids and publication date of the advisories they rest on."""
    _add_column(conn, "decisions", "cves", "JSON")
    _add_column(conn, "decisions", "published", "VARCHAR(32)")


def _v2_to_v3(conn: Any) -> None:
    """Cycles keep the options they were started with, so that `cycle resume` can go on."""
    _add_column(conn, "cycles", "options", "JSON")


def _v3_to_v4(conn: Any) -> None:
    """Decisions carry their SLA due date (runs, task events and approvals are new tables)."""
    _add_column(conn, "decisions", "sla_due", "VARCHAR(32)")


def _v4_to_v5(conn: Any) -> None:
    """Baseline assessments, rule results and remediations: new tables only (made by create_all)."""


def _v5_to_v6(conn: Any) -> None:
    """The notification outbox and tickets: new tables only (made by create_all)."""


def _v6_to_v7(conn: Any) -> None:
    """Assets, asset events and schedule runs: new tables only (made by create_all)."""


def _v7_to_v8(conn: Any) -> None:
    """Agent tokens: a new table only (made by create_all)."""


def _v8_to_v9(conn: Any) -> None:
    """Claims decided by the database: cycle locks carry a holder token and a lease, outbox rows
    the flusher that claimed them."""
    # the type create_all gives DateTime(timezone=True): a lease read back in another zone's
    # wall time would look expired (PostgreSQL) or live for hours too long
    stamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "TIMESTAMP"
    _add_column(conn, "cycle_locks", "holder", "VARCHAR(64) NOT NULL DEFAULT ''")
    _add_column(conn, "cycle_locks", "lease_until", stamp)
    _add_column(conn, "outbox", "claimed_by", "VARCHAR(320)")
    _add_column(conn, "outbox", "claimed_until", stamp)


def _v9_to_v10(conn: Any) -> None:
    """Per-release classification: pending updates and decisions keep the host's OSV ecosystem;
    staged packages' changelogs (urgency, CVEs) are a new table (made by create_all)."""
    _add_column(conn, "pending_updates", "ecosystem", "VARCHAR(64)")
    _add_column(conn, "decisions", "ecosystem", "VARCHAR(64)")


# Migrations: index i upgrades schema version i+1 to i+2. A new store is created at the current
# version by create_all; an older one is brought forward step by step, in one transaction.
MIGRATIONS: list[Any] = [_v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5, _v5_to_v6, _v6_to_v7, _v7_to_v8, _v8_to_v9,
                         _v9_to_v10]


LOCK_LEASE = timedelta(minutes=5)


def now() -> datetime:
    return datetime.now(UTC)


def _aware(stamp: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; they were stored as UTC."""
    return stamp if stamp is None or stamp.tzinfo else stamp.replace(tzinfo=UTC)


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


class Store:
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

    # --- writes ---------------------------------------------------------------------------
    def create_cycle(self, cycle_id: str, inventory: str, policy: dict[str, Any],
                     options: dict[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(cycles).values(id=cycle_id, created_at=now(), status="started",
                                               inventory=inventory, policy=policy, options=options or {}))

    def lock(self, cycle_id: str, lease: timedelta = LOCK_LEASE) -> None:
        """Take the cycle's lock, or fail naming who holds it. The database decides a race: the
        insert of a free lock, or the takeover of a stale one (its process gone on this machine,
        or its lease run out), is a single statement whose row count says who won. While held,
        a thread renews the lease; `unlock` ends both."""
        import os
        import secrets
        import socket

        from sqlalchemy.exc import IntegrityError

        holder = secrets.token_hex(16)
        stamp = now()
        me = {"cycle_id": cycle_id, "pid": os.getpid(), "hostname": socket.gethostname(), "acquired_at": stamp,
              "holder": holder, "lease_until": stamp + lease}
        for _attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(cycle_locks).values(**me))
                self._keep_lock(cycle_id, holder, lease)
                return
            except IntegrityError:
                pass
            with self.engine.connect() as conn:
                held = conn.execute(select(cycle_locks).where(cycle_locks.c.cycle_id == cycle_id)).mappings().first()
            if held is None:
                continue
            lease_until = _aware(held["lease_until"])
            gone = held["hostname"] == me["hostname"] and not alive(int(held["pid"]))
            expired = lease_until is not None and lease_until < now()
            if not (gone or expired):
                raise PatchwaveError(f"cycle {cycle_id} is being driven by pid {held['pid']} on {held['hostname']} "
                                     f"since {held['acquired_at']}; wait for it, or stop it first")
            # take over exactly the stale lock that was read: if another process took it over
            # first, this matches no row and the next attempt reads the new holder
            with self.engine.begin() as conn:
                taken = conn.execute(update(cycle_locks).where(
                    (cycle_locks.c.cycle_id == cycle_id) & (cycle_locks.c.holder == held["holder"])
                    & (cycle_locks.c.pid == held["pid"]) & (cycle_locks.c.hostname == held["hostname"]))
                    .values(**{k: v for k, v in me.items() if k != "cycle_id"})).rowcount
            if taken == 1:
                self._keep_lock(cycle_id, holder, lease)
                why = "which is gone" if gone else f"whose lease ran out at {lease_until}"
                self.log(cycle_id, "lock", f"took over the lock of pid {held['pid']} on {held['hostname']}, {why}")
                return
        raise PatchwaveError(f"cannot take the lock of cycle {cycle_id}: another orchestrator took it first")

    def _keep_lock(self, cycle_id: str, holder: str, lease: timedelta) -> None:
        """Renew the lease every third of its length until unlock (or until the lock is lost)."""
        stop = threading.Event()

        def renew() -> None:
            from sqlalchemy.exc import SQLAlchemyError

            while not stop.wait(lease.total_seconds() / 3):
                try:
                    with self.engine.begin() as conn:
                        kept = conn.execute(update(cycle_locks).where(
                            (cycle_locks.c.cycle_id == cycle_id) & (cycle_locks.c.holder == holder))
                            .values(lease_until=now() + lease)).rowcount
                except SQLAlchemyError:
                    continue  # a busy or briefly unreachable store: the next renewal tries again, in time
                if kept != 1:
                    self.log(cycle_id, "lock", "this orchestrator lost the cycle's lock (its lease was taken over)")
                    return

        self._held[cycle_id] = (holder, stop)
        threading.Thread(target=renew, name=f"lease-{cycle_id}", daemon=True).start()

    def holds_lock(self, cycle_id: str) -> bool:
        held = self._held.get(cycle_id)
        if held is None:
            return False
        with self.engine.connect() as conn:
            return conn.execute(select(cycle_locks.c.holder).where(cycle_locks.c.cycle_id == cycle_id)).scalar() \
                == held[0]

    def unlock(self, cycle_id: str) -> None:
        held = self._held.pop(cycle_id, None)
        if held is None:
            return
        holder, stop = held
        stop.set()
        with self.engine.begin() as conn:
            conn.execute(cycle_locks.delete().where((cycle_locks.c.cycle_id == cycle_id)
                                                    & (cycle_locks.c.holder == holder)))

    def set_cycle_status(self, cycle_id: str, status: str, finished: bool = False) -> None:
        values: dict[str, Any] = {"status": status}
        if finished:
            values["finished_at"] = now()
        with self.engine.begin() as conn:
            conn.execute(update(cycles).where(cycles.c.id == cycle_id).values(**values))

    def log(self, cycle_id: str | None, kind: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(events).values(cycle_id=cycle_id, at=now(), kind=kind, message=message))

    def add_scan(self, cycle_id: str | None, host: str, kind: str, ok: bool, result: dict[str, Any],
                 updates: list[PendingUpdate]) -> int:
        with self.engine.begin() as conn:
            inserted = conn.execute(insert(scans).values(
                cycle_id=cycle_id, host=host, kind=kind, at=now(), ok=ok, result=result))
            scan_id = int(_primary_key(inserted))
            if updates:
                conn.execute(insert(pending), [
                    dict(scan_id=scan_id, host=u.host, name=u.name, installed=u.installed, candidate=u.candidate,
                         source=u.source, security=u.security, held=u.held, new_install=u.new_install,
                         ecosystem=u.ecosystem)
                    for u in updates])
        return scan_id

    def save_manifest(self, manifest: Manifest) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(cycles).where(cycles.c.id == manifest.cycle_id).values(
                manifest=manifest.as_playbook_vars(), status="approved"))
            if manifest.decisions:
                conn.execute(insert(decisions), [
                    dict(cycle_id=manifest.cycle_id, host=d.host, name=d.name, installed=d.installed,
                         version=d.version, approved=d.approved, reason=d.reason,
                         advisories=list(d.advisories), severity=d.severity, cves=list(d.cves),
                         published=d.published, sla_due=d.sla_due, ecosystem=d.ecosystem)
                    for d in manifest.decisions])

    def add_changelogs(self, cycle_id: str, found: list[Changelog]) -> None:
        """What the changelogs of a host's staged packages say, appended (a host staged again
        gets new rows; the latest wins)."""
        if not found:
            return
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(insert(changelogs), [
                dict(cycle_id=cycle_id, host=c.host, name=c.name, version=c.version, at=stamp, urgency=c.urgency,
                     cves=list(c.cves), versions=list(c.versions))
                for c in found])

    def plan_waves(self, cycle_id: str, planned: list[tuple[int, str, list[str]]]) -> None:
        """Record every wave, pending, before the first one starts (resume replays this plan)."""
        with self.engine.begin() as conn:
            for idx, name, hosts in planned:
                conn.execute(insert(waves).values(cycle_id=cycle_id, idx=idx, name=name, hosts=hosts, status="pending"))

    def start_wave(self, cycle_id: str, idx: int, name: str, hosts: list[str]) -> int:
        """Mark a planned wave running (or record a new one) and return its id."""
        with self.engine.begin() as conn:
            row = conn.execute(select(waves.c.id).where((waves.c.cycle_id == cycle_id) & (waves.c.idx == idx))).first()
            if row is not None:
                conn.execute(update(waves).where(waves.c.id == row[0]).values(status="running", started_at=now()))
                return int(row[0])
            inserted = conn.execute(insert(waves).values(
                cycle_id=cycle_id, idx=idx, name=name, hosts=hosts, status="running", started_at=now()))
            return int(_primary_key(inserted))

    def set_wave_status(self, wave_id: int, status: str, gate: dict[str, Any] | None = None) -> None:
        """A wave that is not over yet: awaiting-approval, soaking."""
        values: dict[str, Any] = {"status": status}
        if gate is not None:
            values["gate"] = gate
        with self.engine.begin() as conn:
            conn.execute(update(waves).where(waves.c.id == wave_id).values(**values))

    def finish_wave(self, wave_id: int, status: str, gate: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(waves).where(waves.c.id == wave_id).values(status=status, finished_at=now(), gate=gate))

    def add_host_result(self, cycle_id: str, host: str, stage: str, ok: bool, unreachable: bool, message: str,
                        data: dict[str, Any], wave: int | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(host_results).values(
                cycle_id=cycle_id, host=host, stage=stage, wave=wave, at=now(), ok=ok,
                unreachable=unreachable, message=message, data=json.loads(json.dumps(data, default=str))))

    def add_end_state(self, cycle_id: str, host: str, state: str, packages: list[dict[str, Any]], detail: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(end_states).values(cycle_id=cycle_id, host=host, at=now(), state=state,
                                                   packages=packages, detail=detail))

    def start_run(self, cycle_id: str | None, ident: str, playbook: str, hosts: list[str]) -> int:
        with self.engine.begin() as conn:
            return int(_primary_key(conn.execute(insert(runs).values(
                cycle_id=cycle_id, ident=ident, playbook=playbook, hosts=hosts, started_at=now(), status="running"))))

    def add_task_event(self, run_id: int, host: str, task: str, action: str, kind: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(task_events).values(run_id=run_id, at=now(), host=host, task=task, action=action,
                                                    kind=kind, message=message[:2000]))

    def finish_run(self, run_id: int, status: str, rc: int, seconds: float, handler_seconds: float = 0.0) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                finished_at=now(), seconds=seconds, handler_seconds=handler_seconds, status=status, rc=rc))

    def add_approval(self, cycle_id: str, wave: int, wave_name: str, approved: bool, by: str, comment: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(approvals).values(cycle_id=cycle_id, wave=wave, wave_name=wave_name,
                                                  approved=approved, by=by, at=now(), comment=comment))

    def add_assessment(self, batch: str, host: str, baseline: str, kind: str, ok: bool, unreachable: bool,
                       message: str, summary: dict[str, Any], scores: tuple[float | None, float | None],
                       snapshot: dict[str, Any] | None, drift: dict[str, Any] | None,
                       results: list[dict[str, Any]]) -> int:
        """One host's assessment and all its rule results, in one transaction."""
        with self.engine.begin() as conn:
            assessment_id = int(_primary_key(conn.execute(insert(assessments).values(
                batch=batch, host=host, baseline=baseline, kind=kind, at=now(), ok=ok, unreachable=unreachable,
                message=message, summary=summary, score=scores[0], score_with_exceptions=scores[1],
                snapshot=snapshot, drift=drift))))
            if results:
                conn.execute(insert(rule_results), [
                    dict(assessment_id=assessment_id, host=host, rule_id=r["id"], title=r.get("title", ""),
                         severity=r.get("severity", ""), criticality=r.get("criticality", "normal"), status=r["status"],
                         evidence=r.get("evidence", {}), duration=r.get("duration"), exception_id=r.get("exception"))
                    for r in results])
        return assessment_id

    def add_remediation(self, batch: str, host: str, check_mode: bool, ok: bool, changed: bool, message: str,
                        data: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(remediations).values(batch=batch, host=host, at=now(), check_mode=check_mode, ok=ok,
                                                     changed=changed, message=message,
                                                     data=json.loads(json.dumps(data, default=str))))

    # --- reads ----------------------------------------------------------------------------
    def latest_cycle_id(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(cycles.c.id).order_by(cycles.c.created_at.desc()).limit(1)).scalar()

    def cycle(self, cycle_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(cycles).where(cycles.c.id == cycle_id)).mappings().first()
            return dict(row) if row else None

    def decisions(self, cycle_id: str) -> list[Decision]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(decisions).where(decisions.c.cycle_id == cycle_id)
                                .order_by(decisions.c.host, decisions.c.name)).mappings().all()
        return [Decision(host=r["host"], name=r["name"], installed=r["installed"], version=r["version"],
                         approved=r["approved"], reason=r["reason"], advisories=tuple(r["advisories"]),
                         severity=r["severity"], cves=tuple(r["cves"] or ()), published=r["published"] or "",
                         sla_due=r["sla_due"] or "", ecosystem=r["ecosystem"] or "")
                for r in rows]

    def changelogs(self, cycle_id: str) -> dict[tuple[str, str], Changelog]:
        """(host, package) -> what the staged package's changelog said (the latest staging wins)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(changelogs).where(changelogs.c.cycle_id == cycle_id)
                                .order_by(changelogs.c.id)).mappings().all()
        return {(r["host"], r["name"]): Changelog(host=r["host"], name=r["name"], version=r["version"],
                                                 urgency=r["urgency"], cves=tuple(r["cves"] or ()),
                                                 versions=tuple(r["versions"] or ()))
                for r in rows}

    def waves(self, cycle_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(waves).where(waves.c.cycle_id == cycle_id)
                                                  .order_by(waves.c.idx, waves.c.id)).mappings()]

    def end_states(self, cycle_id: str) -> dict[str, dict[str, Any]]:
        """The latest end state per host (later rows win: history is kept, not overwritten)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(end_states).where(end_states.c.cycle_id == cycle_id)
                                .order_by(end_states.c.id)).mappings().all()
        return {r["host"]: dict(r) for r in rows}

    def events(self, cycle_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        query = select(events).where(events.c.cycle_id == cycle_id)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(events.c.id)).mappings()]

    def scans(self, cycle_id: str, kind: str) -> list[dict[str, Any]]:
        """The latest scan of each host of the cycle, of one kind (scan or confirm)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(scans).where((scans.c.cycle_id == cycle_id) & (scans.c.kind == kind))
                                .order_by(scans.c.id)).mappings().all()
        return list({r["host"]: dict(r) for r in rows}.values())

    def latest_results(self, cycle_id: str, stage: str) -> dict[str, dict[str, Any]]:
        """The latest result of each host for one stage (later rows win; history stays)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(host_results).where((host_results.c.cycle_id == cycle_id)
                                                           & (host_results.c.stage == stage))
                                .order_by(host_results.c.id)).mappings().all()
        return {r["host"]: dict(r) for r in rows}

    def host_results(self, cycle_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(host_results).where(host_results.c.cycle_id == cycle_id)
                                                  .order_by(host_results.c.id)).mappings()]


    def runs(self, cycle_id: str | None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(runs).where(runs.c.cycle_id == cycle_id)
                                                  .order_by(runs.c.id)).mappings()]

    def task_events(self, run_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(task_events).where(task_events.c.run_id == run_id)
                                                  .order_by(task_events.c.id)).mappings()]

    def approvals(self, cycle_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(approvals).where(approvals.c.cycle_id == cycle_id)
                                                  .order_by(approvals.c.id)).mappings()]


    def last_assessment(self, host: str, before_id: int | None = None) -> dict[str, Any] | None:
        """The latest successful assessment of a host (before `before_id` when given), with its rule results."""
        query = select(assessments).where((assessments.c.host == host) & assessments.c.ok)
        if before_id is not None:
            query = query.where(assessments.c.id < before_id)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(assessments.c.id.desc()).limit(1)).mappings().first()
            if row is None:
                return None
            found = dict(row)
            found["results"] = [dict(r) for r in conn.execute(select(rule_results).where(
                rule_results.c.assessment_id == row["id"]).order_by(rule_results.c.id)).mappings()]
        return found

    def assessments(self, batch: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(assessments).where(assessments.c.batch == batch)
                                                  .order_by(assessments.c.id)).mappings()]

    def remediations(self, batch: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(remediations).where(remediations.c.batch == batch)
                                                  .order_by(remediations.c.id)).mappings()]


    # --- the outbox and tickets (notify/) --------------------------------------------------
    def enqueue(self, messages: list[dict[str, Any]]) -> int:
        """Append notifications to the outbox; a message whose key is there already is left out
        (that is what makes a repeated or resumed command send nothing twice). Returns how many
        were new."""
        if not messages:
            return 0
        with self.engine.begin() as conn:
            keys = [m["key"] for m in messages]
            known = set()
            for start in range(0, len(keys), 500):
                known |= set(conn.execute(select(outbox.c.key).where(outbox.c.key.in_(keys[start:start + 500])))
                             .scalars())
            fresh = [m for m in {m["key"]: m for m in messages}.values() if m["key"] not in known]
            stamp = now()
            if fresh:
                conn.execute(insert(outbox), [{"created_at": stamp, "status": "pending", "attempts": 0,
                                               "next_at": stamp, "last_error": "", "ticket": None, **m}
                                              for m in fresh])
        return len(fresh)

    def outbox_due(self, at: datetime) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(outbox).where((outbox.c.status == "pending") & (outbox.c.next_at <= at))
                .order_by(outbox.c.id)).mappings()]

    def claim_outbox(self, row_id: int, attempts: int, at: datetime, by: str, lease: timedelta) -> bool:
        """Claim one due message for sending: True for exactly one flusher, however many try at
        once. The claim names the attempt count that was read, so a flusher working from an older
        read cannot claim a message another one has tried (and put back with a backoff) since.
        A claim not finished within `lease` (the flusher died) is released by
        `release_stale_claims` and the message is sent again: at least once, never twice while
        its sender lives."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(outbox).where(
                (outbox.c.id == row_id) & (outbox.c.status == "pending") & (outbox.c.attempts == attempts)
                & (outbox.c.next_at <= at))
                .values(status="sending", claimed_by=by, claimed_until=now() + lease)).rowcount == 1)

    def release_stale_claims(self) -> int:
        """Messages claimed by a flusher whose lease ran out, or whose process on this machine is
        gone (killed mid-send), are pending again. Each release is conditional on the claim
        read, so a claim renewed or finished meanwhile is left alone."""
        with self.engine.connect() as conn:
            claims = conn.execute(select(outbox.c.id, outbox.c.claimed_by, outbox.c.claimed_until)
                                  .where(outbox.c.status == "sending")).all()
        released = 0
        for row_id, by, claimed_until in claims:
            runner = str(by or "").rpartition(":")[0]  # host:pid of host:pid:token
            until = _aware(claimed_until)
            if (until is not None and until >= now()) and _runner_alive(runner):
                continue
            with self.engine.begin() as conn:
                released += conn.execute(update(outbox).where(
                    (outbox.c.id == row_id) & (outbox.c.status == "sending") & (outbox.c.claimed_by == by))
                    .values(status="pending", claimed_by=None, claimed_until=None)).rowcount
        return released

    def finish_outbox(self, row_id: int, by: str, **values: Any) -> bool:
        """Record what became of a message this flusher claimed (False: the claim was lost)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(outbox).where((outbox.c.id == row_id) & (outbox.c.claimed_by == by)
                                                          & (outbox.c.status == "sending"))
                                     .values(claimed_by=None, claimed_until=None, **values)).rowcount == 1)

    def outbox_rows(self, status: str | None = None) -> list[dict[str, Any]]:
        equal: dict[str, Any] = {} if status is None else {"status": status}
        return list(self.rows("outbox", **equal))

    def outbox_update(self, row_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))

    def sent_since(self, route: str, channel: str, since: datetime) -> list[datetime]:
        """When the messages of a route on a channel were sent since a time (for rate limits)."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(outbox.c.sent_at).where(
                (outbox.c.route == route) & (outbox.c.channel == channel) & (outbox.c.status == "sent")
                & (outbox.c.op == "send") & (outbox.c.sent_at >= since)).order_by(outbox.c.sent_at)).scalars())

    def ticket(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tickets).where(tickets.c.key == key)).mappings().first()
        return dict(row) if row else None

    def tickets(self, **equal: Any) -> list[dict[str, Any]]:
        query = select(tickets).order_by(tickets.c.opened_at, tickets.c.key)
        for column, value in equal.items():
            query = query.where(tickets.c[column] == value)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def save_ticket(self, key: str, **values: Any) -> None:
        """Create the ticket row (state opening) or change it."""
        with self.engine.begin() as conn:
            if conn.execute(select(tickets.c.key).where(tickets.c.key == key)).first() is None:
                stamp = now()
                conn.execute(insert(tickets).values({"key": key, "opened_at": stamp, "updated_at": stamp,
                                                     "reopened": 0, "note": "", **values}))
            else:
                conn.execute(update(tickets).where(tickets.c.key == key).values(updated_at=now(), **values))

    # --- assets and schedules ---------------------------------------------------------------
    def assets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(assets).order_by(assets.c.host)).mappings()]

    def record_discovery(self, inventory: str, shapes: dict[str, dict[str, Any]], changes: list[dict[str, Any]],
                         at: datetime) -> None:
        """One transaction: the assets as the inventory shows them now, and every change seen."""
        with self.engine.begin() as conn:
            known = {r["host"] for r in conn.execute(select(assets.c.host)).mappings()}
            for name, shape in shapes.items():
                values = {"inventory": inventory, "last_discovered": at, "gone_at": None, **shape}
                if name in known:
                    conn.execute(update(assets).where(assets.c.host == name).values(**values))
                else:
                    conn.execute(insert(assets).values(host=name, first_seen=at, **values))
            for change in changes:
                if change["kind"] == "gone":
                    conn.execute(update(assets).where(assets.c.host == change["host"]).values(gone_at=at))
                conn.execute(insert(asset_events).values(at=at, host=change["host"], kind=change["kind"],
                                                         detail=change["detail"], decision=change["decision"]))

    def asset_events(self, kind: str | None = None, pending: bool = False) -> list[dict[str, Any]]:
        query = select(asset_events).order_by(asset_events.c.id)
        if kind is not None:
            query = query.where(asset_events.c.kind == kind)
        if pending:
            query = query.where(asset_events.c.decision.is_not(None) & asset_events.c.done_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def finish_asset_event(self, event_id: int, outcome: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(asset_events).where(asset_events.c.id == event_id).values(done_at=now(),
                                                                                          outcome=outcome))

    def last_times(self) -> dict[str, dict[str, datetime]]:
        """Per host: when it last answered (seen), was last scanned, assessed and patched."""
        from sqlalchemy import func, union_all

        out: dict[str, dict[str, datetime]] = {}
        seen = union_all(
            select(scans.c.host, func.max(scans.c.at).label("at")).where(scans.c.ok).group_by(scans.c.host),
            select(assessments.c.host, func.max(assessments.c.at).label("at")).where(assessments.c.ok)
            .group_by(assessments.c.host),
            select(host_results.c.host, func.max(host_results.c.at).label("at"))
            .where(host_results.c.ok | ~host_results.c.unreachable).group_by(host_results.c.host)).subquery()
        queries = {
            "seen": select(seen.c.host, func.max(seen.c.at)).group_by(seen.c.host),
            "scanned": select(scans.c.host, func.max(scans.c.at)).where(scans.c.ok & (scans.c.kind == "scan"))
            .group_by(scans.c.host),
            "assessed": select(assessments.c.host, func.max(assessments.c.at)).where(assessments.c.ok)
            .group_by(assessments.c.host),
            "patched": select(end_states.c.host, func.max(end_states.c.at))
            .where(end_states.c.state.in_(("patched", "patched-pending-reboot"))).group_by(end_states.c.host),
        }
        with self.engine.connect() as conn:
            for what, query in queries.items():
                for host, stamp in conn.execute(query):
                    if stamp is not None:
                        out.setdefault(host, {})[what] = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        return out

    def last_slots(self) -> dict[str, datetime]:
        """Per job, the slot of its latest run (whatever became of it)."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            rows = conn.execute(select(schedule_runs.c.job, func.max(schedule_runs.c.slot))
                                .group_by(schedule_runs.c.job)).all()
        return {job: slot if slot.tzinfo else slot.replace(tzinfo=UTC) for job, slot in rows}

    def claim_slot(self, job: str, slot: datetime, runner: str) -> int | None:
        """Record that this process runs the job's slot, unless another run of the job is still
        going or the slot was taken already (the unique (job, slot) pair decides a race). Returns
        the run's id, or None when the job must not run now."""
        from sqlalchemy.exc import IntegrityError

        with self.claiming(schedule_runs) as conn:
            running = conn.execute(select(schedule_runs.c.runner).where(
                (schedule_runs.c.job == job) & (schedule_runs.c.status == "running"))).scalars().all()
            if any(_runner_alive(r) for r in running):
                return None
            try:
                return int(_primary_key(conn.execute(insert(schedule_runs).values(
                    job=job, slot=slot, started_at=now(), status="running", runner=runner, detail={}))))
            except IntegrityError:
                return None

    def finish_slot(self, run_id: int, status: str, detail: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schedule_runs).where(schedule_runs.c.id == run_id).values(
                finished_at=now(), status=status, detail=detail))

    def schedule_runs(self, job: str | None = None) -> list[dict[str, Any]]:
        equal: dict[str, Any] = {} if job is None else {"job": job}
        return list(self.rows("schedule_runs", **equal))

    def set_agent_token(self, host: str, token_sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(agent_tokens.delete().where(agent_tokens.c.host == host))
            conn.execute(insert(agent_tokens).values(host=host, token_sha256=token_sha256, created_at=now()))

    def agent_token(self, host: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(agent_tokens.c.token_sha256).where(agent_tokens.c.host == host)).scalar()
        return str(found) if found else None

    # --- reads for reports: every row, in id order, optionally since a date -----------------
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

    def failure_transitions(self, severity: str) -> Any:
        """The rule results of one severity that start or end a failure of a host's rule: a fail or
        error after anything else (or first), a pass after anything else; as (host, rule_id,
        title, assessment_id, status), in order per host and rule. The database walks the history
        (a window function over the covering index), so millions of results come back as their
        transitions."""
        from sqlalchemy import and_, func, or_

        failing = ("fail", "error")
        previous = func.lag(rule_results.c.status).over(partition_by=(rule_results.c.host, rule_results.c.rule_id),
                                                        order_by=rule_results.c.assessment_id).label("previous")
        inner = (select(rule_results.c.id, rule_results.c.host, rule_results.c.rule_id, rule_results.c.assessment_id,
                        rule_results.c.status, previous)
                 .where(rule_results.c.severity == severity).subquery())
        titled = rule_results.alias("titled")  # the title is not in the index: read only for what comes back
        query = (select(inner.c.host, inner.c.rule_id, titled.c.title, inner.c.assessment_id, inner.c.status)
                 .join(titled, titled.c.id == inner.c.id)
                 .where(or_(and_(inner.c.status.in_(failing),
                                 or_(inner.c.previous.is_(None), inner.c.previous.not_in(failing))),
                            and_(inner.c.status == "pass", inner.c.previous != "pass")))
                 .order_by(inner.c.host, inner.c.rule_id, inner.c.assessment_id))
        with self.engine.connect() as conn:
            yield from conn.execution_options(stream_results=True, yield_per=5000).execute(query)

    def rule_counts(self, assessment_ids: list[int], chunk: int = 5000) -> dict[tuple[str, str, str], dict[str, int]]:
        """Per rule (id, title, severity) of these assessments: how many results have each status.
        The database counts (a million results come back as a few hundred rows); the ids go in
        chunks so that no statement carries more parameters than a database accepts."""
        from sqlalchemy import func

        counts: dict[tuple[str, str, str], dict[str, int]] = {}
        ids = sorted(set(assessment_ids))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), chunk):
                query = (select(rule_results.c.rule_id, rule_results.c.title, rule_results.c.severity,
                                rule_results.c.status, func.count())
                         .where(rule_results.c.assessment_id.in_(ids[start:start + chunk]))
                         .group_by(rule_results.c.rule_id, rule_results.c.title, rule_results.c.severity,
                                   rule_results.c.status))
                for rule_id, title, severity, status, count in conn.execute(query):
                    per_status = counts.setdefault((rule_id, title, severity), {})
                    per_status[status] = per_status.get(status, 0) + count
        return counts

    def span(self) -> tuple[datetime | None, datetime | None]:
        """The earliest and latest time anything was recorded (cycles, scans, assessments)."""
        from sqlalchemy import func

        lows, highs = [], []
        with self.engine.connect() as conn:
            for column in (cycles.c.created_at, scans.c.at, assessments.c.at):
                low, high = conn.execute(select(func.min(column), func.max(column))).one()
                if low is not None:
                    lows.append(low)
                    highs.append(high)
        return (min(lows) if lows else None, max(highs) if highs else None)


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


def _runner_alive(runner: str) -> bool:
    """Is the process `host:pid` still running? (Another machine's process counts as alive.)"""
    import socket

    host, _sep, pid = runner.rpartition(":")
    return host != socket.gethostname() or not pid.isdigit() or alive(int(pid))


def _primary_key(result: Any) -> Any:
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
