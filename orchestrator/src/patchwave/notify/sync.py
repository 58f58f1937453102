"""The ops side of the ticket loop. Every open ticket is looked up in its ticket system; one that
ops marked done moves to `confirming`, and its host is rescanned (a patch ticket) or reassessed
(a rule ticket) at once: a pass closes the ticket with that evidence, a failure re-opens it with
the new evidence. A host that cannot be reached leaves its ticket confirming, and the next sync
tries again; one still unconfirmed after the policy's `tickets.confirm_within_minutes` is
reported as overdue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from debian.debian_support import Version

from patchwave.clock import aware
from patchwave.models import PendingUpdate
from patchwave.notify import channels
from patchwave.notify.config import TICKET_TYPES
from patchwave.notify.events import tickets_only
from patchwave.notify.outbox import Event, Notifier
from patchwave.states import TicketState

if TYPE_CHECKING:
    from patchwave.baseline.profile import Baseline
    from patchwave.paths import Paths

Log = Callable[[str], None]


def poll(notifier: Notifier, log: Log) -> list[dict[str, Any]]:
    """Ask the ticket system about every open ticket; those ops marked done move to confirming
    (and are returned). A ticket system that does not answer leaves its tickets as they are."""
    marked = []
    for ticket in notifier.store.tickets(state=TicketState.OPEN):
        channel = notifier.policy.channels.get(ticket["channel"])
        if channel is None or channel.type not in TICKET_TYPES or not ticket["external_id"]:
            continue
        try:
            done = channels.ticket_system(channel, notifier.base).is_closed(ticket["external_id"])  # type: ignore[arg-type]
        except channels.DeliveryError as exc:
            log(f"tickets: {ticket['number']} ({ticket['channel']}) not checked: {exc}")
            continue
        if done:
            notifier.store.save_ticket(ticket["key"], state=TicketState.CONFIRMING,
                                       note="marked done in the ticket system; a confirming check decides")
            log(f"tickets: {ticket['number']} ({ticket['host']}: {ticket['subject']}) marked done: confirming")
            marked.append(ticket)
    return marked


def still_missing(store: Any, ticket: dict[str, Any], pending: list[PendingUpdate]) -> list[str]:
    """The packages a patch ticket's cycle wanted on its host that a rescan still shows below the
    wanted version (a package no longer pending is at its newest version)."""
    state = store.end_states(ticket["subject"]).get(ticket["host"]) or {}
    waiting = {u.name: u for u in pending}
    missing = []
    for package in state.get("packages") or []:
        update = waiting.get(package.get("name", ""))
        wanted = package.get("wanted")
        if update is None or not wanted:
            continue
        if update.installed is None or Version(update.installed) < Version(str(wanted)):
            missing.append(f"{package['name']} {update.installed or '-'} (wanted {wanted})")
    return missing


def sync(paths: Paths, notifier: Notifier, inventory: Path, baseline: Baseline, log: Log,
         now: datetime | None = None) -> dict[str, Any]:
    """Poll, then confirm every ticket waiting for it; what happened, per ticket."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.baseline import service as baseline_service
    from patchwave.patching.runs import playbook_runner
    from patchwave.patching.scan import scan_hosts
    from patchwave.progress import quiet

    store = notifier.store
    marked = poll(notifier, log)
    waiting = store.tickets(state=TicketState.CONFIRMING)
    hosts = {h.name: h for h in load_hosts(inventory)}
    gone = [t for t in waiting if t["host"] not in hosts]
    for ticket in gone:
        log(f"tickets: {ticket['number']}: {ticket['host']} is no longer in {inventory}; left confirming")
    rule_hosts = sorted({t["host"] for t in waiting if t["kind"] == "rule" and t["host"] in hosts})
    patch_hosts = sorted({t["host"] for t in waiting if t["kind"] == "patch" and t["host"] in hosts})
    queued = 0
    if rule_hosts:  # the assessment's own end closes what passes and re-opens what still fails
        finished = baseline_service.assess(paths, store, inventory, baseline, [hosts[h] for h in rule_hosts], quiet(),
                                           log, notifier)
        queued += (finished.notified or {}).get("queued", 0)
    if patch_hosts:
        runner = playbook_runner(paths, store, quiet(), paths.state / "scans", None)
        for scanned in scan_hosts(store, runner, inventory, [hosts[h] for h in patch_hosts], None):
            if not scanned["ok"]:
                continue  # unreachable proves nothing: the ticket stays confirming
            queued += confirm_patch(notifier, scanned["host"], scanned["updates"])
    counts = notifier.flush()
    stamp = now or datetime.now(UTC)
    limit = timedelta(minutes=notifier.policy.tickets.confirm_within_minutes)
    after = {t["key"]: t for t in store.tickets()}
    outcome = []
    for ticket in waiting:
        current = after.get(ticket["key"]) or ticket
        overdue = (current["state"] == TicketState.CONFIRMING
                   and stamp - aware(ticket["updated_at"]) > limit)
        if overdue:
            log(f"tickets: {ticket['number']} ({ticket['host']}) marked done {ticket['updated_at']:%Y-%m-%d %H:%M} UTC "
                f"and still not confirmed (confirm_within_minutes {limit.total_seconds() / 60:g}): is the host reachable?")
        outcome.append({"ticket": ticket["number"], "host": ticket["host"], "kind": ticket["kind"],
                        "subject": ticket["subject"], "state": current["state"], "overdue": overdue})
    return {"marked_done": len(marked), "confirming": outcome, "queued": queued, **counts}


def confirm_patch(notifier: Notifier, host: str, pending: list[PendingUpdate]) -> int:
    """Close the host's confirming patch tickets whose fixes the rescan shows installed, and
    re-open (with what is still missing) those it does not."""
    added = 0
    for ticket in notifier.store.tickets(kind="patch", host=host, state=TicketState.CONFIRMING):
        missing = still_missing(notifier.store, ticket, pending)
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        if not missing:
            added += notifier.ticket_progress(
                "patch", host, ticket["subject"], f"confirmed|{ticket['key']}|{stamp}",
                f"Marked done: the confirming rescan of {host} at {stamp} shows every fix of cycle "
                f"{ticket['subject']} installed.", resolved=True)
            continue
        event = Event("patch_failed", f"patch_unconfirmed|{ticket['key']}|{stamp}", "high",
                      f"{host}: patch cycle {ticket['subject']} not fixed",
                      f"Marked done, but the confirming rescan of {host} at {stamp} still finds: "
                      f"{', '.join(missing)}", (host,), {"cycle": ticket["subject"], "missing": missing},
                      ("patch", host, ticket["subject"]))
        added += tickets_only(notifier, event)
    return added
