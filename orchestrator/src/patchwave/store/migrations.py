"""Bringing an older store forward, one schema version at a time."""

from __future__ import annotations

from typing import Any


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


def _v10_to_v11(conn: Any) -> None:
    """Rule failures (when a host's rule started failing, when it passed again) kept as
    assessments come in: a new table, filled once from the rule results already stored."""
    from patchwave.store.history import rebuild_rule_failures

    rebuild_rule_failures(conn)


# Migrations: index i upgrades schema version i+1 to i+2. A new store is created at the current
# version by create_all; an older one is brought forward step by step, in one transaction.
MIGRATIONS: list[Any] = [_v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5, _v5_to_v6, _v6_to_v7, _v7_to_v8, _v8_to_v9,
                         _v9_to_v10, _v10_to_v11]
