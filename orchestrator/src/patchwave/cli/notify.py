"""patchwave notify: the outbox, digests, checks of a notification policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from patchwave.cli.common import (
    BaselineOpt,
    ExceptionsOpt,
    InventoryOpt,
    JsonOpt,
    StoreOpt,
    cells,
    emit_json,
    err,
    load_baseline,
    log_line,
    notify_app,
    open_store,
)
from patchwave.errors import InputError
from patchwave.paths import project_paths

NotifyFileOpt = Annotated[Path | None, typer.Option("--policy", "-p", envvar="PATCHWAVE_NOTIFY",
                                                    help="Notification policy (default: --notify / PATCHWAVE_NOTIFY).")]


def _notifier(store: str | None, inventory: Path | None, policy: Path | None) -> Any:
    from patchwave import notify

    paths = project_paths()
    path = policy or notify.configured()
    if path is None:
        raise InputError("no notification policy: give --policy FILE, `patchwave --notify FILE ...` or set "
                         "PATCHWAVE_NOTIFY (see docs/notifications.md)")
    inv = inventory or paths.lab_inventory
    return notify.notifier(open_store(store), inv if inv.exists() else None, path,
                           log=log_line)


@notify_app.command("check")
def notify_check(policy: NotifyFileOpt = None, inventory: InventoryOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a notification policy (and its groups against the inventory); send nothing."""
    sender = _notifier(None, inventory, policy)
    result = {"channels": {n: c.type for n, c in sender.policy.channels.items()},
              "routes": [{"name": r.name, "events": r.events, "channels": r.channels} for r in sender.policy.routes]}
    if as_json:
        emit_json(result)
    else:
        err.print(f"notification policy OK: {len(result['channels'])} channel(s), {len(result['routes'])} route(s)")


@notify_app.command("flush")
def notify_flush(
    policy: NotifyFileOpt = None, inventory: InventoryOpt = None, store: StoreOpt = None,
    wait: Annotated[float, typer.Option("--wait", min=0, help="Keep retrying for up to this many seconds.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Send everything in the outbox that is due (retries with backoff; held messages wait)."""
    counts = _notifier(store, inventory, policy).flush(wait_seconds=wait)
    if as_json:
        emit_json(counts)
    else:
        err.print(", ".join(f"{v} {k}" for k, v in counts.items()))
    if counts["pending"] or counts["failed"]:
        raise typer.Exit(1)


@notify_app.command("digest")
def notify_digest(policy: NotifyFileOpt = None, inventory: InventoryOpt = None, store: StoreOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Queue the periodic messages (hosts still non-compliant, SLAs about to breach or breached;
    once a day at most) and send them. Run it from a timer."""
    from patchwave.notify import events

    sender = _notifier(store, inventory, policy)
    queued = events.digest(sender)
    counts = sender.flush()
    if as_json:
        emit_json({"queued": queued, **counts})
    else:
        err.print(f"{queued} queued; " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@notify_app.command("sync")
def notify_sync(policy: NotifyFileOpt = None, inventory: InventoryOpt = None, baseline: BaselineOpt = None,
                exceptions: ExceptionsOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """The ops side of the ticket loop: look up every open ticket in its ticket system; each one
    ops marked done is confirmed at once (its host rescanned or reassessed with --baseline and
    --exceptions): closed on a pass, re-opened with the new evidence on a failure. Exits 1 when a
    confirmation is overdue (tickets.confirm_within_minutes). Run it from a timer, or a
    schedule's ticket-sync job."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.notify import sync

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    loaded = load_baseline(baseline, exceptions, load_hosts(inv))
    result = sync.sync(paths, _notifier(store, inventory, policy), inv, loaded, log_line)
    if as_json:
        emit_json(result)
    else:
        err.print(f"{result['marked_done']} ticket(s) newly marked done; {len(result['confirming'])} confirmed or "
                  f"waiting; {result['queued']} queued, {result['sent']} sent")
        for entry in result["confirming"]:
            err.print(escape(f"  {entry['ticket']} {entry['host']} {entry['subject']}: {entry['state']}"
                             + (" (OVERDUE)" if entry["overdue"] else "")))
    if any(e["overdue"] for e in result["confirming"]):
        raise typer.Exit(1)


@notify_app.command("status")
def notify_status(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """The outbox (pending and given-up messages with their last error) and the tickets."""
    st = open_store(store)
    rows = st.outbox_rows()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    waiting = [{k: row[k] for k in ("key", "channel", "op", "subject", "status", "attempts", "next_at", "last_error")}
               for row in rows if row["status"] in ("pending", "failed")]
    tickets = [{k: t[k] for k in ("key", "number", "state", "host", "subject", "reopened", "opened_at", "closed_at")}
               for t in st.tickets()]
    if as_json:
        emit_json({"outbox": counts, "waiting": waiting, "tickets": tickets})
        return
    err.print("outbox: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "empty"))
    if waiting:
        table = Table("channel", "op", "subject", "status", "attempts", "next", "last error")
        for w in waiting:
            table.add_row(w["channel"], w["op"], escape(w["subject"]), w["status"], str(w["attempts"]),
                          f"{w['next_at']:%Y-%m-%d %H:%M:%S}", escape(w["last_error"]))
        err.print(table)
    if tickets:
        table = Table("ticket", "state", "host", "about", "re-opened")
        for t in tickets:
            table.add_row(*cells(t["number"] or "(opening)", t["state"], t["host"], t["subject"], t["reopened"]))
        err.print(table)
