"""The baseline's use cases, the one way through for every caller (the CLI, the scheduler,
discovery, the agent endpoint): assess and remediate, each ending the same way — stored, the
assessment's workbook, alerts and tickets raised or closed, the exit code — with the
organisation's profile and exceptions register as the caller loaded them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchwave.ansible.inventory import load_hosts
from patchwave.baseline.assessment import run_assessment
from patchwave.baseline.profile import Baseline
from patchwave.baseline.remediation import run_remediation
from patchwave.models import EXIT_HOSTS_FAILED, EXIT_OK, Finished, Host
from patchwave.paths import Paths
from patchwave.progress import Display
from patchwave.store import Store

if TYPE_CHECKING:
    from patchwave.notify.outbox import Notifier

Log = Callable[[str], None]


def assessment_exit_code(report: dict[str, Any]) -> int:
    """1 when a host was not assessed, a rule fails or errs, or a host drifted critically."""
    bad = [h for h in report["hosts"] if not h["ok"] or h["summary"]["fail"] or h["summary"]["error"]
           or (h.get("drift") or {}).get("critical")]
    return EXIT_HOSTS_FAILED if bad else EXIT_OK


def remediation_exit_code(report: dict[str, Any]) -> int:
    """1 when a host failed, or a fix was refused (lock-out guard) or erred."""
    bad = [h for h in report["hosts"] if not h["ok"] or any(r["status"] in ("refused", "error") for r in h["results"])]
    return EXIT_HOSTS_FAILED if bad else EXIT_OK


def finish_assessment(paths: Paths, store: Store, inventory: Path, report: dict[str, Any], log: Log,
                      sender: Notifier | None = None) -> Finished:
    """The end of every assessment, whoever ran it or delivered it: the workbook and the
    notifications (derived from the stored results, so finishing twice queues nothing new),
    through `sender` when the caller holds its own notification policy."""
    from patchwave import notify
    from patchwave.reporting.workbook import write_assessment_workbook

    hosts = load_hosts(inventory)
    book = write_assessment_workbook(report, hosts, paths.output / f"baseline-{report['batch']}.xlsx")
    notified = notify.after("assessment", store, report["batch"], inventory, log, sender)
    return Finished({**report, "workbook": str(book)}, book, notified, assessment_exit_code(report))


def assess(paths: Paths, store: Store, inventory: Path, baseline: Baseline, hosts: list[Host],
           display: Display | None = None, log: Log = lambda _msg: None, sender: Notifier | None = None) -> Finished:
    """Assess `hosts` against `baseline` (its exceptions applied), one module call per host."""
    return finish_assessment(paths, store, inventory, run_assessment(paths, store, inventory, baseline, hosts, display),
                             log, sender)


def remediate(paths: Paths, store: Store, inventory: Path, baseline: Baseline, hosts: list[Host], check: bool,
              display: Display | None = None, log: Log = lambda _msg: None) -> Finished:
    """Assess, fix what the baseline can fix (lock-out guarded), reassess; tickets are commented
    on and closed by the confirming assessment."""
    from patchwave import notify

    report = run_remediation(paths, store, inventory, baseline, hosts, check, display)
    notified = notify.after("remediation", store, report["batch"], inventory, log)
    return Finished(report, None, notified, remediation_exit_code(report))
