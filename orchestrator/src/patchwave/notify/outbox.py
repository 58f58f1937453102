"""The outbox: every notification and ticket call is a row in the store before anything is sent.
Each row has an idempotency key, so an event seen twice (a repeated command, a resumed
orchestrator) is queued once; `flush` sends what is due, in order, retries with exponential
backoff, holds messages in quiet hours or over a rate limit, and keeps the operations on one
ticket in order (a close never overtakes the open)."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchwave.clock import aware
from patchwave.models import Host
from patchwave.notify import channels
from patchwave.notify.config import TICKET_TYPES, NotifyPolicy, Route, Smtp, Webhook, describe
from patchwave.states import CLOSABLE_TICKETS, TicketState
from patchwave.store import Store

Log = Callable[[str], None]
# How long a flusher may take to send one claimed message before another may send it again
# (a flusher that died mid-send): longer than any channel's timeout and retries within a send.
CLAIM_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Event:
    """Something that happened. `key` identifies it for good (the same event derived again has
    the same key); `hosts` are what routes filter on; `ticket` = (kind, host, subject) for the
    events a ticket is about."""

    kind: str
    key: str
    severity: str
    subject: str
    text: str
    hosts: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    ticket: tuple[str, str, str] | None = None


def ticket_key(channel: str, kind: str, host: str, subject: str) -> str:
    return f"{channel}:{kind}:{host}:{subject}"


class Notifier:
    def __init__(self, store: Store, policy: NotifyPolicy, base: Path, hosts: list[Host],
                 log: Log | None = None) -> None:
        self.store, self.policy, self.base = store, policy, base
        self.hosts = {h.name: h for h in hosts}
        self.log = log or (lambda _m: None)
        # who holds this flusher's outbox claims: a process gone from this machine holds none
        self.claimant = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        # warnings must be seen: without a log (the CLI's goes to stderr) they go to stderr
        self.warn: Log = log or _stderr

    # --- queueing ---------------------------------------------------------------------------
    def matches(self, route: Route, event: Event) -> bool:
        if event.kind not in route.events:
            return False
        if route.severities and event.severity not in route.severities:
            return False
        if not (route.groups or route.device_types or route.owners):
            return True
        return any(self.host_matches(route, name) for name in event.hosts)

    def host_matches(self, route: Route, name: str) -> bool:
        host = self.hosts.get(name)
        if host is None:
            return False
        return ((not route.groups or any(g in route.groups for g in host.groups))
                and (not route.device_types or host.device_type in route.device_types)
                and (not route.owners or host.owner in route.owners))

    def emit(self, event: Event, only: Route | None = None) -> int:
        """Queue the event for every channel of every route that wants it; returns the rows added."""
        rows: list[dict[str, Any]] = []
        for route in [only] if only is not None else self.policy.routes:
            if not self.matches(route, event):
                continue
            for name in route.channels:
                channel = self.policy.channels[name]
                if channel.type in TICKET_TYPES:
                    if event.ticket is not None:
                        rows += self._ticket_rows(route, name, event)
                    continue
                rows.append(self._row(f"send|{event.key}|{route.name}|{name}", name, route.name, event, "send"))
        return self.store.enqueue(rows)

    def _row(self, key: str, channel: str, route: str, event: Event, op: str, ticket: str | None = None,
             text: str | None = None) -> dict[str, Any]:
        return {"key": key, "channel": channel, "route": route, "event": event.kind, "op": op, "ticket": ticket,
                "severity": event.severity, "subject": event.subject,
                "body": {"text": text if text is not None else event.text, "hosts": list(event.hosts),
                         "data": event.data}}

    def _ticket_rows(self, route: Route, channel: str, event: Event) -> list[dict[str, Any]]:
        kind, host, subject = event.ticket or ("", "", "")
        key = ticket_key(channel, kind, host, subject)
        known = self.store.ticket(key)
        if known is None:
            self.store.save_ticket(key, channel=channel, kind=kind, host=host, subject=subject, state=TicketState.OPENING)
            return [self._row(f"open|{key}", channel, route.name, event, "open", key)]
        if known["state"] in (TicketState.CLOSING, TicketState.CLOSED):
            # failing again after it was fixed: the same ticket comes back, with the new evidence
            self.store.save_ticket(key, state=TicketState.OPENING)
            return [self._row(f"reopen|{key}|{event.key}", channel, route.name, event, "reopen", key)]
        # still failing: the ticket must still be open in the ticket system (someone may have closed it)
        return [self._row(f"check|{key}|{event.key}", channel, route.name, event, "check", key)]

    def ticket_progress(self, kind: str, host: str, subject: str, key: str, text: str, resolved: bool) -> int:
        """Comment on (or, when `resolved`, close) every open ticket about this host and subject."""
        rows: list[dict[str, Any]] = []
        for ticket in self.store.tickets(kind=kind, host=host, subject=subject):
            if ticket["state"] not in CLOSABLE_TICKETS:
                continue
            op = "close" if resolved else "update"
            event = Event("ticket", key, "low", f"{host}: {subject}", text, (host,))
            rows.append(self._row(f"{op}|{ticket['key']}|{key}", ticket["channel"], "-", event, op, ticket["key"]))
            if resolved:
                self.store.save_ticket(ticket["key"], state=TicketState.CLOSING)
        return self.store.enqueue(rows)

    # --- sending ----------------------------------------------------------------------------
    def flush(self, wait_seconds: float = 0.0, now: Callable[[], datetime] | None = None) -> dict[str, int]:
        """Send what is due. With `wait_seconds`, keep retrying until nothing is pending or the
        time is up. Returns counts of what happened in this call."""
        clock = now or (lambda: datetime.now(UTC))
        counts = {"sent": 0, "retry": 0, "failed": 0, "held": 0}
        deadline = time.monotonic() + wait_seconds
        while True:
            self._pass(clock(), counts)
            pending = self.store.outbox_rows("pending")
            if not pending or time.monotonic() >= deadline:
                counts["pending"] = len(pending)
                return counts
            soonest = min(aware(r["next_at"]) for r in pending)
            pause = (soonest - clock()).total_seconds()
            time.sleep(min(max(pause, 0.05), max(deadline - time.monotonic(), 0.05)))

    def _pass(self, at: datetime, counts: dict[str, int]) -> None:
        self.store.release_stale_claims()
        blocked: set[str] = set()  # tickets with an earlier operation still pending (or being sent elsewhere)
        for row in list(self.store.rows("outbox", status=["pending", "sending"])):
            if row["ticket"] and row["ticket"] in blocked:
                continue
            if row["status"] == "sending" or aware(row["next_at"]) > at:
                if row["ticket"]:
                    blocked.add(row["ticket"])
                continue
            outcome = self._deliver(row, at)
            if outcome == "claimed":  # another flusher sends it
                if row["ticket"]:
                    blocked.add(row["ticket"])
                continue
            counts[outcome] += 1
            if outcome != "sent" and row["ticket"]:
                blocked.add(row["ticket"])

    def _deliver(self, row: dict[str, Any], at: datetime) -> str:
        channel = self.policy.channels.get(row["channel"])
        if channel is None:
            self.store.outbox_update(row["id"], status="failed",
                                     last_error=f"channel {row['channel']} is not in the notification policy any more")
            return "failed"
        if row["op"] == "send":
            held = self._held_until(row, at)
            if held is not None:
                self.store.outbox_update(row["id"], next_at=held[0], last_error=held[1])
                return "held"
        # the database decides which flusher sends it: exactly one claim succeeds
        if not self.store.claim_outbox(row["id"], row["attempts"], at, self.claimant, CLAIM_LEASE):
            return "claimed"
        insecure = bool(getattr(channel, "insecure", False))
        if insecure:  # every use, so that nobody forgets the channel sends its credential in the clear
            self.warn(f"notify: WARNING: channel {row['channel']} ({describe(channel)}) sends its credentials over "
                      "plain http (insecure: true in the notification policy): anyone on the path can read them")
        try:
            result = self._send(channel, row)
        except channels.DeliveryError as exc:
            attempts = row["attempts"] + 1
            give_up = not exc.retry or attempts >= self.policy.delivery.max_attempts
            delay = min(self.policy.delivery.max_backoff_seconds,
                        self.policy.delivery.backoff_seconds * 2 ** (attempts - 1))
            self.store.finish_outbox(row["id"], self.claimant, attempts=attempts, last_error=str(exc),
                                     status="failed" if give_up else "pending",
                                     next_at=at + timedelta(seconds=delay),
                                     **({"result": {"insecure": True}} if insecure else {}))
            self.log(f"notify: {row['channel']} {row['op']} {row['subject']!r}: {exc}"
                     + (" (giving up)" if give_up else f" (retry in {delay:g} s)"))
            if give_up and row["op"] == "close" and row["ticket"]:
                # never left `closing`: the ticket is still open in the ticket system, and the next
                # passing check (or notify sync) tries to close it again
                self.store.save_ticket(row["ticket"], state=TicketState.OPEN, note=f"closing failed: {exc}"[:500])
            return "failed" if give_up else "retry"
        except BaseException:
            self.store.finish_outbox(row["id"], self.claimant, status="pending")  # not sent: release the claim
            raise
        self.store.finish_outbox(row["id"], self.claimant, status="sent", sent_at=datetime.now(UTC),
                                 attempts=row["attempts"] + 1, last_error="",
                                 result={**result, "insecure": True} if insecure else result)
        return "sent"

    def _held_until(self, row: dict[str, Any], at: datetime) -> tuple[datetime, str] | None:
        route = self.policy.route(row["route"])
        if route is None:
            return None
        if route.quiet_hours is not None and row["severity"] not in route.quiet_hours.except_severities:
            until = route.quiet_hours.holds_until(at)
            if until is not None:
                return until.astimezone(UTC), f"held: quiet hours of route {route.name} until {until:%H:%M %Z}"
        if route.rate_limit is not None:
            window = timedelta(minutes=route.rate_limit.per_minutes)
            sent = self.store.sent_since(route.name, row["channel"], at - window)
            if len(sent) >= route.rate_limit.messages:
                free = aware(sent[len(sent) - route.rate_limit.messages]) + window
                return free, (f"held: route {route.name} sent {len(sent)} message(s) in the last "
                              f"{route.rate_limit.per_minutes:g} minute(s) (limit {route.rate_limit.messages})")
        return None

    def _send(self, channel: Any, row: dict[str, Any]) -> dict[str, Any]:
        body = row["body"] or {}
        if isinstance(channel, Webhook):
            return channels.send_webhook(channel, self.base, row["key"], {
                "id": row["key"], "event": row["event"], "severity": row["severity"], "subject": row["subject"],
                "text": body.get("text", ""), "hosts": body.get("hosts", []), "data": body.get("data", {}),
                "created_at": aware(row["created_at"]).isoformat()})
        if isinstance(channel, Smtp):
            return channels.send_mail(channel, self.base, row["key"], f"[patchwave] {row['subject']}",
                                      body.get("text", ""))
        return self._ticket_op(channels.ticket_system(channel, self.base), row)

    def _ticket_op(self, system: channels.TicketSystem, row: dict[str, Any]) -> dict[str, Any]:
        key = row["ticket"]
        ticket = self.store.ticket(key) or {}
        text = (row["body"] or {}).get("text", "")
        external = ticket.get("external_id")
        # a ticket whose opening was given up has no id: the next reopen or check opens it
        if row["op"] == "open" or (row["op"] in ("reopen", "check") and not external):
            mark = channels.marker(key)
            found = system.find(mark)  # opened before, and the answer lost? then it is that one
            made = found or system.open(mark, row["subject"], text, row["severity"])
            self.store.save_ticket(key, state=TicketState.OPEN, external_id=made["external_id"], number=made["number"],
                                   closed_at=None)
            return {**made, "found": found is not None}
        if not external:
            raise channels.DeliveryError(f"ticket {key} was never opened", retry=False)
        if row["op"] == "update":
            system.comment(external, text)
        elif row["op"] == "close":
            system.close(external, text)
            self.store.save_ticket(key, state=TicketState.CLOSED, closed_at=datetime.now(UTC), note=text[:500])
        elif row["op"] == "reopen":
            system.reopen(external, text)
            self.store.save_ticket(key, state=TicketState.OPEN, closed_at=None)
        elif row["op"] == "check" and system.is_closed(external):
            system.reopen(external, "Closed in the ticket system, but the latest check still fails:\n\n" + text)
            self.store.save_ticket(key, state=TicketState.OPEN, closed_at=None,
                                   reopened=int(ticket.get("reopened") or 0) + 1,
                                   note="closed in the ticket system while still failing; re-opened")
            return {"external_id": external, "reopened": True}
        elif row["op"] == "check" and ticket.get("state") == TicketState.CONFIRMING:
            # marked done, then re-opened by hand before the confirming check: open, and still failing
            system.comment(external, "The confirming check still fails:\n\n" + text)
            self.store.save_ticket(key, state=TicketState.OPEN, note="re-opened in the ticket system; still failing")
        return {"external_id": external}


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
