"""Notifications and tickets: `notify/config.py` (the policy), `events.py` (what happened, from
the store), `outbox.py` (queue and deliver), `channels.py` (webhook, SMTP, Jira, ServiceNow).

Commands that produce results call `after()` at their end: it derives the events, queues them in
the outbox and sends what it can at once; what cannot be sent waits for `patchwave notify flush`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchwave.notify import config, events
from patchwave.notify.outbox import Notifier
from patchwave.store import Store

ENV = "PATCHWAVE_NOTIFY"


def configured() -> Path | None:
    """The notification policy in use (`--notify` or PATCHWAVE_NOTIFY), if any."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def notifier(store: Store, inventory: Path | None, path: Path | None = None,
             log: Callable[[str], None] | None = None) -> Notifier | None:
    from patchwave.ansible.inventory import load_hosts

    path = path or configured()
    if path is None:
        return None
    hosts = load_hosts(inventory) if inventory is not None and inventory.exists() else []
    policy = config.load(path, known_groups={g for h in hosts for g in h.groups} if hosts else None)
    return Notifier(store, policy, config.base_dir(path), hosts, log)


def after(kind: str, store: Store, ident: str, inventory: Path | None,
          log: Callable[[str], None], sender: Notifier | None = None) -> dict[str, Any] | None:
    """Queue what a finished command has to say (kind: cycle, assessment, remediation) and send
    what is due, through `sender` (the policy in use, PATCHWAVE_NOTIFY's, when None). Delivery
    problems never fail the command: they stay in the outbox."""
    sender = sender or notifier(store, inventory, log=log)
    if sender is None:
        return None
    if kind == "cycle":
        queued = events.after_cycle(sender, ident)
    elif kind == "assessment":
        queued = events.after_assessment(sender, ident)
    else:  # remediation: what it found, what it did, what the confirming assessment shows
        queued = (events.after_assessment(sender, ident, kind="assess") + events.after_remediation(sender, ident)
                  + events.after_assessment(sender, ident, kind="confirm"))
    counts = sender.flush()
    log(f"notify: {queued} queued; {counts['sent']} sent, {counts['held']} held, {counts['retry']} to retry, "
        f"{counts['failed']} given up; {counts['pending']} pending (patchwave notify flush / status)")
    return {"queued": queued, **counts}
