"""Patching's use cases, the one way through for every caller (the CLI, the scheduler's catch-up,
discovery's patch-now): start, drive, roll back a cycle, and end each the same way — the
cycle's status report, its workbook, its alerts and tickets, and the exit code, decided here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.models import EXIT_HOSTS_FAILED, EXIT_OK, EXIT_STOPPED, Finished
from patchwave.patching.cycle import Cycle
from patchwave.patching.policy import Policy
from patchwave.patching.rollback import rollback
from patchwave.patching.status import status_report
from patchwave.paths import Paths
from patchwave.progress import Display, quiet
from patchwave.states import FAILED_STATES, CycleStatus
from patchwave.store import Store

Log = Callable[[str], None]


def cycle_exit_code(status: dict[str, Any]) -> int:
    """0 all good, 1 some hosts failed, 3 stopped by a gate: halted, or waiting at a manual
    approval gate."""
    if status["status"] in (CycleStatus.HALTED, CycleStatus.AWAITING_APPROVAL):
        return EXIT_STOPPED
    if any(h["state"] in FAILED_STATES for h in status["hosts"]):
        return EXIT_HOSTS_FAILED
    return EXIT_OK


def finish(paths: Paths, store: Store, cycle_id: str, log: Log) -> Finished:
    """The end of every run of a cycle, whoever started it: the status report, the workbook,
    the notifications (events derived from the store, so finishing twice queues nothing new)."""
    from patchwave import notify
    from patchwave.reporting.workbook import write_cycle_workbook

    status = status_report(store, cycle_id)
    inventory = Path(str((store.cycle(cycle_id) or {})["inventory"]))
    # the cycle has run: an inventory moved away since only costs the workbook its owner columns
    hosts = load_hosts(inventory) if inventory.exists() else []
    book = write_cycle_workbook(status, hosts, paths.output / f"patch-cycle-{cycle_id}.xlsx")
    notified = notify.after("cycle", store, cycle_id, inventory, log)
    return Finished({**status, "workbook": str(book)}, book, notified, cycle_exit_code(status))


def run_cycle(paths: Paths, store: Store, inventory: Path, policy: Policy, *, advisories: Path | None = None,
              policy_dir: Path | None = None, force_window: bool = False, emergency: list[str] | None = None,
              skip_soak: bool = False, carry_over: tuple[str, list[tuple[str, str, str]]] | None = None,
              display: Display | None = None, log: Log = lambda _msg: None) -> Finished:
    """Start a cycle under `policy` and drive it as far as it goes (its end, or a manual gate)."""
    cycle_id = Cycle(paths, store, inventory, display or quiet()).run(
        policy, advisories, policy_dir=policy_dir, force_window=force_window, emergency=emergency,
        skip_soak=skip_soak, carry_over=carry_over)
    return finish(paths, store, cycle_id, log)


def drive_cycle(paths: Paths, store: Store, cycle_id: str, display: Display | None = None,
                log: Log = lambda _msg: None) -> Finished:
    """Go on with a stored cycle from where it stands (a resume, or after an approval)."""
    inventory = Path(str((store.cycle(cycle_id) or {})["inventory"]))
    Cycle(paths, store, inventory, display or quiet()).drive(cycle_id)
    return finish(paths, store, cycle_id, log)


def rollback_cycle(paths: Paths, store: Store, cycle_id: str, display: Display | None = None,
                   log: Log = lambda _msg: None) -> Finished:
    """Put every host the cycle reached back at its versions from before the cycle."""
    rollback(paths, store, cycle_id, display)
    return finish(paths, store, cycle_id, log)
