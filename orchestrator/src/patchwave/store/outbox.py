"""The notification outbox (claimed row by row in the database) and the tickets it keeps."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    insert,
    select,
    update,
)

from patchwave.clock import aware, now
from patchwave.store.base import StoreBase, runner_alive
from patchwave.store.schema import outbox, tickets


class OutboxRecords(StoreBase):
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
            until = aware(claimed_until)
            if (until is not None and until >= now()) and runner_alive(runner):
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
