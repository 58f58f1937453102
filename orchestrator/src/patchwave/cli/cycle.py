"""patchwave scan and patchwave cycle: scans, plans, patch cycles in waves, approvals, rollback, status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from patchwave.cli.common import (
    AdvisoriesOpt,
    InventoryOpt,
    JsonOpt,
    StoreOpt,
    app,
    cells,
    cycle_app,
    emit_json,
    err,
    live_display,
    log_line,
    open_store,
)
from patchwave.errors import HostFailure, InputError, PatchwaveError
from patchwave.models import Finished
from patchwave.paths import project_paths


def run_cycle(store_url: str | None, inventory: Path | None, advisories: Path | None,
              canary: int | None, policy_file: Path | None = None,
              force_window: bool = False, emergency: list[str] | None = None,
              skip_soak: bool = False) -> Finished:
    """Read and check the options and the policy, then start the cycle through the service."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.patching import policy as policy_mod
    from patchwave.patching import service, waves

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    if advisories is None and inventory is None:
        advisories = paths.lab / "advisories"
    if policy_file is not None:
        if canary is not None:
            raise InputError("--canary applies to the built-in policy only; set the waves in the policy file")
        policy_mod.load(policy_file)  # a bad policy is refused before the inventory is even read
    hosts = load_hosts(inv)
    if policy_file is not None:
        policy = policy_mod.load(policy_file, known_groups={g for h in hosts for g in h.groups})
    else:
        policy = policy_mod.Policy(waves=waves.default_waves(1 if canary is None else canary))
    return service.run_cycle(paths, open_store(store_url), inv, policy, advisories=advisories,
                             policy_dir=policy_file.parent if policy_file else None, force_window=force_window,
                             emergency=emergency, skip_soak=skip_soak, display=live_display(), log=log_line)


def _print_cycle(status: dict[str, Any]) -> None:
    waves = Table("wave", "hosts", "status", "gate", title=f"cycle {status['cycle_id']}: waves")
    for w in status["waves"]:
        waves.add_row(*cells(f"{w['index']} {w['name']}", ", ".join(w["hosts"]), w["status"],
                              (w["gate"] or {}).get("reason", "")))
    for a in status["approvals"]:
        waves.add_row(*cells(f"  {a['wave']}", "", "approved" if a["approved"] else "rejected",
                              f"by {a['by']} at {a['at']:%Y-%m-%d %H:%M} {a['comment']}".rstrip()))
    err.print(waves)
    if status["status"] == "awaiting-approval":
        err.print(f"[bold]waiting for approval[/bold]: {escape(status['reason'])}")
        return
    table = Table("host", "end state", "packages (before → after)", "detail",
                  title=f"cycle {status['cycle_id']}: {status['status']}")
    for h in status["hosts"]:
        pkgs = "\n".join(_package_line(p) for p in h["packages"])
        table.add_row(*cells(h["host"], h["state"], pkgs, h["detail"]))
    err.print(table)


def _package_line(package: dict[str, Any]) -> str:
    """`name before → after`, then the advisories' CVEs and what the staged package's changelog
    said, each labelled with where it comes from (a changelog's CVE is no advisory)."""
    parts = [f"{package['name']} {package['before'] or '-'} → {package['after'] or '-'}"]
    if package.get("cves"):
        parts.append(f"advisories: {', '.join(package['cves'])}")
    changelog = [f"urgency {package['changelog_urgency']}"] if package.get("changelog_urgency") else []
    changelog += list(package.get("changelog_cves") or [])
    if changelog:
        parts.append(f"changelog: {', '.join(changelog)}")
    return "; ".join(parts)


def report_cycle(finished: Finished, as_json: bool) -> None:
    """Print how a cycle's run ended (the status, or --json) and exit with its code."""
    if as_json:
        emit_json(finished.report)
    else:
        _print_cycle(finished.report)
        err.print(f"workbook: [bold]{escape(str(finished.workbook))}[/bold]")
    if finished.exit_code:
        raise typer.Exit(finished.exit_code)


@cycle_app.command("run")
def cycle_run(
    store: StoreOpt = None, inventory: InventoryOpt = None, advisories: AdvisoriesOpt = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Patch policy (YAML, see docs/policies.md).")] = None,
    canary: Annotated[int | None, typer.Option(help="Hosts in the canary wave (built-in policy only; default 1).",
                                               min=0)] = None,
    force_window: Annotated[bool, typer.Option("--force-window",
                                               help="Start waves outside their maintenance window (recorded).")] = False,
    skip_soak: Annotated[bool, typer.Option("--skip-soak", help="Do not wait out the waves' soak times (recorded).")] = False,
    emergency: Annotated[bool, typer.Option("--emergency", help="Out-of-cycle: only the fixes of --advisory.")] = False,
    advisory: Annotated[list[str] | None, typer.Option("--advisory", help="Advisory or CVE id (with --emergency).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a whole patch cycle: scan, approve, stage, deploy in waves, confirm, workbook."""
    if emergency != bool(advisory):
        raise InputError("--emergency and --advisory ID go together")
    report_cycle(run_cycle(store, inventory, advisories, canary, policy, force_window, advisory or [], skip_soak),
                 as_json)


@app.command("scan")
def scan(inventory: InventoryOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Scan every host for pending updates; stored, nothing approved or installed."""
    from patchwave.patching.scan import scan_only

    paths = project_paths()
    report = scan_only(paths, open_store(store), inventory or paths.lab_inventory, live_display())
    if as_json:
        emit_json(report)
    else:
        table = Table("host", "pending", "security", "held", "reboot", "note")
        for h in report:
            table.add_row(*cells(h["host"], len(h["updates"]), sum(u["security"] for u in h["updates"]),
                                  sum(u["held"] for u in h["updates"]), "yes" if h["reboot_required"] else "",
                                  h["message"]))
        err.print(table)
    if any(not h["ok"] for h in report):
        raise typer.Exit(1)


@cycle_app.command("rollback")
def cycle_rollback(
    cycle_id: Annotated[str, typer.Argument(help="The cycle to roll back.")],
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Put every host the cycle reached back at its versions from before the cycle."""
    from patchwave.patching import service

    report_cycle(service.rollback_cycle(project_paths(), open_store(store), cycle_id, live_display(), log_line),
                 as_json)


@cycle_app.command("resume")
def cycle_resume(
    cycle_id: Annotated[str | None, typer.Argument(help="Cycle id (default: the latest unfinished one).")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Continue a cycle that was interrupted (the orchestrator was killed, the machine rebooted)."""
    from patchwave.states import CycleStatus

    st = open_store(store)
    cycle_id = cycle_id or st.latest_cycle_id()
    row = st.cycle(cycle_id) if cycle_id else None
    if row is None or cycle_id is None:
        raise InputError("no cycle to resume: the store has none" if cycle_id is None else f"no cycle {cycle_id!r} in the store")
    if CycleStatus(row["status"]).final:
        raise InputError(f"cycle {cycle_id} already ended ({row['status']}); nothing to resume")
    err.print(f"resuming cycle {cycle_id} (it was {row['status']})")
    _drive_and_report(st, cycle_id, as_json)


def _drive_and_report(st: Any, cycle_id: str, as_json: bool) -> None:
    from patchwave.patching import service

    report_cycle(service.drive_cycle(project_paths(), st, cycle_id, live_display(), log_line), as_json)


@cycle_app.command("approve")
def cycle_approve(
    cycle_id: Annotated[str, typer.Argument(help="The cycle waiting at an approval gate.")],
    wave: Annotated[str | None, typer.Option("--wave", help="The wave to decide on (default: the waiting one).")] = None,
    by: Annotated[str | None, typer.Option("--by", envvar="PATCHWAVE_USER",
                                           help="Who decides (default: the login name).")] = None,
    comment: Annotated[str, typer.Option("--comment", help="Why; stored with the decision.")] = "",
    reject: Annotated[bool, typer.Option("--reject", help="Refuse: the wave and the rest of the rollout stop.")] = False,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Only record the decision; `cycle resume` later.")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Approve (or --reject) the wave a cycle waits at, recorded with who and when; then go on."""
    import getpass

    from patchwave.patching.cycle import approve
    from patchwave.patching.status import status_report

    st = open_store(store)
    name = approve(st, cycle_id, wave, by if by is not None else getpass.getuser(), comment, not reject)
    err.print(f"wave {name} of cycle {cycle_id} {'rejected' if reject else 'approved'}")
    if no_resume:
        status = status_report(st, cycle_id)
        if as_json:
            emit_json(status)
        return
    _drive_and_report(st, cycle_id, as_json)


@cycle_app.command("plan")
def cycle_plan(
    inventory: InventoryOpt = None, advisories: AdvisoriesOpt = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Patch policy (YAML, see docs/policies.md).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The manifest and the waves (with their maintenance windows) a cycle would use now.
    Scans without refreshing package lists; changes no host and stores nothing. Exits 1 when a
    host could not be scanned (the plan shown covers the others)."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.patching import policy as policy_mod
    from patchwave.patching.advisories import load_advisories
    from patchwave.patching.plan import plan

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    if advisories is None and inventory is None:
        advisories = paths.lab / "advisories"
    if policy is not None:
        policy_mod.load(policy)  # a bad policy is refused before the inventory is even read
    hosts = load_hosts(inv)
    loaded = (policy_mod.load(policy, known_groups={g for h in hosts for g in h.groups}) if policy
              else policy_mod.Policy())
    found = load_advisories(loaded, policy.parent if policy else None, advisories)
    result = plan(paths, inv, loaded, found, live_display())
    if as_json:
        emit_json(result)
    else:
        table = Table("host", "package", "installed → candidate", "severity", "SLA due", "decision",
                      title=f"plan under policy {escape(result['policy'])}")
        for d in result["decisions"]:
            table.add_row(*cells(d["host"], d["name"], f"{d['installed'] or '-'} → {d['version']}", d["severity"],
                                  d["sla_due"], d["reason"]))
        err.print(table)
        for wave in result["waves"]:
            err.print(escape(f"wave {wave['index']} {wave['name']}: {', '.join(wave['hosts'])} — window: "
                             f"{wave['next_opening']}"))
    if result["unscanned"]:
        # like a cycle with a failed host: the plan is only as good as the scans it rests on
        missing = result["unscanned"]
        raise HostFailure(f"{len(missing)} of {len(result['hosts'])} host(s) could not be scanned (unreachable or the "
                          f"scan failed): {', '.join(missing)}; the plan covers only the others")


@cycle_app.command("status")
def cycle_status(
    cycle_id: Annotated[str | None, typer.Argument(help="Cycle id (default: the latest).")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Per host: end state and each package's before and after version."""
    from patchwave.patching.status import status_report

    st = open_store(store)
    cycle_id = cycle_id or st.latest_cycle_id()
    if cycle_id is None:
        raise PatchwaveError("the store has no cycles yet: run `patchwave cycle run` or `patchwave demo`")
    status = status_report(st, cycle_id)
    if as_json:
        emit_json(status)
    else:
        _print_cycle(status)
    from patchwave.patching.service import cycle_exit_code

    code = cycle_exit_code(status)
    if code:
        raise typer.Exit(code)
