"""The `patchwave` command line. Machine output (--json) goes to stdout, everything else to stderr."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patchwave.errors import HostFailure, InputError, PatchwaveError
from patchwave.paths import project_paths

app = typer.Typer(no_args_is_help=True, add_completion=False)
lab_app = typer.Typer(no_args_is_help=True, help="The lab fleet of real Debian hosts (podman).")
cycle_app = typer.Typer(no_args_is_help=True, help="Patch cycles: plan, run in waves, status.")
app.add_typer(lab_app, name="lab")
app.add_typer(cycle_app, name="cycle")

err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
notify_app = typer.Typer(no_args_is_help=True, help="Notifications and tickets: the outbox, digests, checks.")
app.add_typer(notify_app, name="notify")
schedule_app = typer.Typer(no_args_is_help=True, help="Schedules: discovery, scans and assessments on cadences.")
app.add_typer(schedule_app, name="schedule")
agent_app = typer.Typer(no_args_is_help=True, help="Agent mode: hosts that deliver their own results.")
app.add_typer(agent_app, name="agent")


@app.callback()
def _options(
    notify: Annotated[Path | None, typer.Option(
        "--notify", envvar="PATCHWAVE_NOTIFY",
        help="Notification policy (YAML, see docs/notifications.md): alerts and tickets after each command.")] = None,
) -> None:
    """Agentless patch and configuration management."""
    import os

    if notify is not None:
        from patchwave.notify import ENV, config

        config.load(notify)  # a bad policy stops here, before anything runs
        os.environ[ENV] = str(notify.resolve())


def _notify(kind: str, store: Any, ident: str, inventory: Path | None) -> dict[str, Any] | None:
    """After a command: queue and send its notifications (when a notification policy is set)."""
    from patchwave import notify

    return notify.after(kind, store, ident, inventory, log=lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))


def _cells(*values: Any) -> list[str]:
    """Table cells from data (host messages, names, comments, paths): shown as text, never read
    as rich markup (a `[/x]` in an Ansible message would otherwise stop the command)."""
    return [escape(str(v)) for v in values]


def _writable(target: Path, option: str, folder: bool = False) -> Path:
    """An output path (a file, or a `folder`) that can be written: refused before anything runs
    when where it would go is a file, or a folder this user may not write to."""
    import os

    if not folder and target.is_dir():
        raise InputError(f"{option} {target}: is a folder; give a file")
    probe = target if folder else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{option} {target}: {probe} is a file, so nothing can be written under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{option} {target}: cannot write to {probe}")
    return target


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class LabContent(StrEnum):
    synthetic = "synthetic"
    real = "real"


ContentOpt = Annotated[LabContent, typer.Option(
    "--content", help="synthetic: the lab's own packages (6 hosts); real: Debian 11/12/13 hosts from the main suite "
                      "with the security archive's real updates on a lab mirror (9 hosts, inventories/lab-real).")]


def _lab(kind: LabContent = LabContent.synthetic) -> Any:
    from patchwave.lab.fleet import Lab
    from patchwave.lab.real import RealLab

    lab_class = RealLab if kind is LabContent.real else Lab
    return lab_class(project_paths(), log=lambda msg: err.print(f"[dim]lab:[/dim] {msg}"))


@lab_app.command("up")
def lab_up(
    hosts: Annotated[int | None, typer.Option(help="Number of hosts (default 6).", min=1, max=60)] = None,
    base_port: Annotated[int | None, typer.Option(help="First 127.0.0.1 port for sshd.", min=1024, max=65000)] = None,
    content: ContentOpt = LabContent.synthetic,
    as_json: JsonOpt = False,
) -> None:
    """Build (cached) images and the signed repository, start the hosts, write the inventory."""
    result = _lab(content).up(hosts, base_port)
    if as_json:
        _emit_json(result)
    else:
        err.print(f"lab {'changed' if result['changed'] else 'already up, nothing changed'} "
                  f"in {result['seconds']}s; inventory: {result['inventory']}")
        _print_hosts(result["hosts"])


@lab_app.command("down")
def lab_down(
    purge_images: Annotated[bool, typer.Option(help="Also remove the cached lab images.")] = False,
    content: ContentOpt = LabContent.synthetic,
    as_json: JsonOpt = False,
) -> None:
    """Remove every container, network and file the lab made."""
    result = _lab(content).down(purge_images)
    if as_json:
        _emit_json(result)
    else:
        err.print(f"lab down: removed {len(result['removed'])} item(s)")


@lab_app.command("status")
def lab_status(content: ContentOpt = LabContent.synthetic, as_json: JsonOpt = False) -> None:
    """Show the lab's hosts and whether their containers run."""
    result = _lab(content).status()
    if as_json:
        _emit_json(result)
    else:
        if not result["hosts"]:
            err.print("lab is down")
        _print_hosts(result["hosts"])
    if result["hosts"] and not result["up"]:
        raise typer.Exit(1)


def _print_hosts(hosts: list[dict[str, Any]]) -> None:
    if not hosts:
        return
    table = Table("host", "container", "release", "ssh", "groups", "device", "owner", "state")
    for h in hosts:
        table.add_row(h["name"], h["container"], f"{h['release']} ({h['debian_version']})",
                      f"127.0.0.1:{h['ssh_port']}", ",".join(h["groups"]), h["device_type"], h["owner"],
                      h.get("state", ""))
    err.print(table)


StoreOpt = Annotated[str | None, typer.Option("--store", envvar="PATCHWAVE_STORE",
                                             help="SQLAlchemy URL of the store (default: SQLite in .patchwave/).")]
InventoryOpt = Annotated[Path | None, typer.Option("--inventory", "-i", help="Inventory (default: the lab's).")]
AdvisoriesOpt = Annotated[Path | None, typer.Option("--advisories", help="OSV advisory file or directory.")]


def _store(url: str | None) -> Any:
    from patchwave.store import Store

    return Store(url or project_paths().store_url)


def _display() -> Any:
    """Live per-host progress on a terminal, plain lines in logs and pipes."""
    from patchwave.progress import Display

    return Display(err)


def _run_cycle(store_url: str | None, inventory: Path | None, advisories: Path | None,
               canary: int | None, policy_file: Path | None = None,
               force_window: bool = False, emergency: list[str] | None = None,
               skip_soak: bool = False) -> tuple[Any, str, Path]:
    from patchwave import policy as policy_mod
    from patchwave import waves
    from patchwave.cycle import Cycle, status_report
    from patchwave.inventory import load_hosts
    from patchwave.reporting.workbook import write_cycle_workbook

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
    store = _store(store_url)
    cycle_id = Cycle(paths, store, inv, _display()).run(
        policy, advisories, policy_dir=policy_file.parent if policy_file else None, force_window=force_window,
        emergency=emergency, skip_soak=skip_soak)
    status = status_report(store, cycle_id)
    book = write_cycle_workbook(status, hosts, paths.output / f"patch-cycle-{cycle_id}.xlsx")
    _notify("cycle", store, cycle_id, inv)
    return status, cycle_id, book


def _print_cycle(status: dict[str, Any]) -> None:
    waves = Table("wave", "hosts", "status", "gate", title=f"cycle {status['cycle_id']}: waves")
    for w in status["waves"]:
        waves.add_row(*_cells(f"{w['index']} {w['name']}", ", ".join(w["hosts"]), w["status"],
                              (w["gate"] or {}).get("reason", "")))
    for a in status["approvals"]:
        waves.add_row(*_cells(f"  {a['wave']}", "", "approved" if a["approved"] else "rejected",
                              f"by {a['by']} at {a['at']:%Y-%m-%d %H:%M} {a['comment']}".rstrip()))
    err.print(waves)
    if status["status"] == "awaiting-approval":
        err.print(f"[bold]waiting for approval[/bold]: {escape(status['reason'])}")
        return
    table = Table("host", "end state", "packages (before → after)", "detail",
                  title=f"cycle {status['cycle_id']}: {status['status']}")
    for h in status["hosts"]:
        pkgs = "\n".join(_package_line(p) for p in h["packages"])
        table.add_row(*_cells(h["host"], h["state"], pkgs, h["detail"]))
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


def _report(status: dict[str, Any], book: Path, as_json: bool) -> None:
    status["workbook"] = str(book)
    if as_json:
        _emit_json(status)
    else:
        _print_cycle(status)
        err.print(f"workbook: [bold]{escape(str(book))}[/bold]")
    _exit_for(status)


def _exit_for(status: dict[str, Any]) -> None:
    """0 all good, 1 some hosts failed, 3 stopped by a gate — halted, or waiting at a manual
    approval gate (2 is bad input, raised earlier)."""
    from patchwave.models import FAILED_STATES

    if status["status"] in ("halted", "awaiting-approval"):
        raise typer.Exit(3)
    if any(h["state"] in FAILED_STATES for h in status["hosts"]):
        raise typer.Exit(1)


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
    status, _cycle_id, book = _run_cycle(store, inventory, advisories, canary, policy, force_window, advisory or [],
                                         skip_soak)
    _report(status, book, as_json)


@app.command("scan")
def scan(inventory: InventoryOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Scan every host for pending updates; stored, nothing approved or installed."""
    from patchwave.cycle import scan_only

    paths = project_paths()
    report = scan_only(paths, _store(store), inventory or paths.lab_inventory, _display())
    if as_json:
        _emit_json(report)
    else:
        table = Table("host", "pending", "security", "held", "reboot", "note")
        for h in report:
            table.add_row(*_cells(h["host"], len(h["updates"]), sum(u["security"] for u in h["updates"]),
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
    from patchwave.cycle import rollback, status_report
    from patchwave.inventory import load_hosts
    from patchwave.reporting.workbook import write_cycle_workbook

    paths = project_paths()
    st = _store(store)
    rollback(paths, st, cycle_id, _display())
    status = status_report(st, cycle_id)
    row = st.cycle(cycle_id) or {}
    book = write_cycle_workbook(status, load_hosts(Path(row["inventory"])),
                                paths.output / f"patch-cycle-{cycle_id}.xlsx")
    _notify("cycle", st, cycle_id, Path(row["inventory"]))
    _report(status, book, as_json)


@cycle_app.command("resume")
def cycle_resume(
    cycle_id: Annotated[str | None, typer.Argument(help="Cycle id (default: the latest unfinished one).")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Continue a cycle that was interrupted (the orchestrator was killed, the machine rebooted)."""
    from patchwave.cycle import FINAL_STATUSES

    st = _store(store)
    cycle_id = cycle_id or st.latest_cycle_id()
    row = st.cycle(cycle_id) if cycle_id else None
    if row is None or cycle_id is None:
        raise InputError("no cycle to resume: the store has none" if cycle_id is None else f"no cycle {cycle_id!r} in the store")
    if row["status"] in FINAL_STATUSES:
        raise InputError(f"cycle {cycle_id} already ended ({row['status']}); nothing to resume")
    err.print(f"resuming cycle {cycle_id} (it was {row['status']})")
    _drive_and_report(st, cycle_id, as_json)


def _drive_and_report(st: Any, cycle_id: str, as_json: bool) -> None:
    from patchwave.cycle import Cycle, status_report
    from patchwave.inventory import load_hosts
    from patchwave.reporting.workbook import write_cycle_workbook

    paths = project_paths()
    inventory = Path((st.cycle(cycle_id) or {})["inventory"])
    Cycle(paths, st, inventory, _display()).drive(cycle_id)
    status = status_report(st, cycle_id)
    book = write_cycle_workbook(status, load_hosts(inventory), paths.output / f"patch-cycle-{cycle_id}.xlsx")
    _notify("cycle", st, cycle_id, inventory)
    _report(status, book, as_json)


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

    from patchwave.cycle import approve, status_report

    st = _store(store)
    name = approve(st, cycle_id, wave, by if by is not None else getpass.getuser(), comment, not reject)
    err.print(f"wave {name} of cycle {cycle_id} {'rejected' if reject else 'approved'}")
    if no_resume:
        status = status_report(st, cycle_id)
        if as_json:
            _emit_json(status)
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
    from patchwave import policy as policy_mod
    from patchwave.cycle import load_advisories, plan
    from patchwave.inventory import load_hosts

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
    result = plan(paths, inv, loaded, found, _display())
    if as_json:
        _emit_json(result)
    else:
        table = Table("host", "package", "installed → candidate", "severity", "SLA due", "decision",
                      title=f"plan under policy {escape(result['policy'])}")
        for d in result["decisions"]:
            table.add_row(*_cells(d["host"], d["name"], f"{d['installed'] or '-'} → {d['version']}", d["severity"],
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
    from patchwave.cycle import status_report

    st = _store(store)
    cycle_id = cycle_id or st.latest_cycle_id()
    if cycle_id is None:
        raise PatchwaveError("the store has no cycles yet: run `patchwave cycle run` or `patchwave demo`")
    status = status_report(st, cycle_id)
    if as_json:
        _emit_json(status)
    else:
        _print_cycle(status)
    _exit_for(status)


BaselineOpt = Annotated[Path | None, typer.Option("--baseline", "-b",
                                                  help="Baseline profile or rule file (default: the shipped profile).")]
ExceptionsOpt = Annotated[Path | None, typer.Option("--exceptions", "-e", help="Exceptions register (YAML).")]
LimitOpt = Annotated[list[str] | None, typer.Option("--limit", "-l", help="Only this host (repeatable).")]


def _baseline(profile: Path | None, exceptions: Path | None, hosts: list[Any]) -> Any:
    from patchwave.baseline import DEFAULT_PROFILE, Baseline

    baseline = Baseline(profile or DEFAULT_PROFILE, exceptions)
    baseline.check_inventory(hosts, layers=profile is not None)
    return baseline


@app.command("assess")
def assess(
    inventory: InventoryOpt = None, baseline: BaselineOpt = None, exceptions: ExceptionsOpt = None,
    limit: LimitOpt = None, store: StoreOpt = None,
    compile_to: Annotated[Path | None, typer.Option("--compile", help="Only write each host's compiled rules "
                                                     "(for playbooks/assess.yml) to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Assess every host against its baseline: one module call per host, evidence for every
    rule, scores with and without exceptions, drift since the last assessment; all stored."""
    from patchwave.assessment import compile_rules, rules_document, run_assessment, select_hosts
    from patchwave.inventory import load_hosts

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    if compile_to is not None:
        _writable(compile_to, "--compile")
    hosts = select_hosts(inv, limit)
    loaded = _baseline(baseline, exceptions, load_hosts(inv))
    if compile_to is not None:
        document = json.dumps(rules_document(compile_rules(loaded, hosts)), indent=1, sort_keys=True) + "\n"
        try:
            compile_to.write_text(document)
        except OSError as exc:
            raise InputError(f"--compile {compile_to}: cannot write it: {exc.strerror or exc}") from exc
        err.print(escape(f"compiled rules for {len(hosts)} host(s): {compile_to}"))
        return
    st = _store(store)
    report = run_assessment(paths, st, inv, loaded, hosts, _display())
    _notify("assessment", st, report["batch"], inv)
    if as_json:
        _emit_json(report)
    else:
        _print_assessment(report)
    for h in report["hosts"]:  # on stderr even with --json: someone must see it at once
        for line in (h.get("drift") or {}).get("critical", []):
            err.print(f"[bold red]CRITICAL DRIFT[/bold red] {h['host']}: {escape(line)}", highlight=False)
    bad = [h for h in report["hosts"] if not h["ok"] or h["summary"]["fail"] or h["summary"]["error"]
           or (h.get("drift") or {}).get("critical")]
    if bad:
        raise typer.Exit(1)


def _print_assessment(report: dict[str, Any]) -> None:
    table = Table("host", "score", "with exceptions", "pass", "fail", "error", "n/a", "excepted", "drift",
                  title=escape(f"baseline {report['baseline']} (assessment {report['batch']})"))
    for h in report["hosts"]:
        if not h["ok"]:
            table.add_row(escape(h["host"]), "-", "-", "", "", "", "", "", f"[red]not assessed: {escape(h['message'])}[/red]")
            continue
        s, d = h["summary"], h.get("drift")
        change = "first assessment" if d is None else (
            f"+{len(d['newly_failing'])} failing, {len(d['newly_fixed'])} fixed, {len(d['new_ports'])} new port(s), "
            f"{len(d['new_packages'])} new package(s), {len(d['new_services'])} new service(s)")
        table.add_row(escape(h["host"]), f"{h['score']}%", f"{h['score_with_exceptions']}%", str(s["pass"]), str(s["fail"]),
                      str(s["error"]), str(s["not_applicable"]), str(s["excepted"]), change)
    err.print(table)


@app.command("remediate")
def remediate(
    inventory: InventoryOpt = None, baseline: BaselineOpt = None, exceptions: ExceptionsOpt = None,
    limit: LimitOpt = None, store: StoreOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Only show what would change (with a diff); change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Assess, fix the failing rules that declare a remediation (lock-out guarded), reassess.
    Run it with --check first: every planned change with its diff, nothing touched."""
    from patchwave.assessment import select_hosts
    from patchwave.inventory import load_hosts
    from patchwave.remediation import run_remediation

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    hosts = select_hosts(inv, limit)
    loaded = _baseline(baseline, exceptions, load_hosts(inv))
    st = _store(store)
    report = run_remediation(paths, st, inv, loaded, hosts, check, _display())
    _notify("remediation", st, report["batch"], inv)
    if as_json:
        _emit_json(report)
    else:
        table = Table("host", "rule", "result", "what", title=f"remediation {report['batch']}"
                      + (" (check mode: nothing changed)" if check else ""))
        for h in report["hosts"]:
            if not h["ok"]:
                table.add_row(escape(h["host"]), "", "[red]failed[/red]", escape(h["message"]))
            for r in h["results"]:
                what = "; ".join(r["actions"]) or r["message"]
                table.add_row(*_cells(h["host"], r["id"], r["status"], what))
        err.print(table)
        for h in report["hosts"]:
            if h["score_after"] is not None:
                err.print(escape(f"{h['host']}: score {h['score_before']}% → {h['score_after']}%; still failing: "
                                 f"{len(h['still_failing'])}"))
    if any(not h["ok"] or any(r["status"] in ("refused", "error") for r in h["results"]) for h in report["hosts"]):
        raise typer.Exit(1)


@app.command("report")
def report(
    kind: Annotated[str, typer.Option("--type", "-t", help="compliance, patch, owner, vendor, trend, cycle or all.")] = "all",
    definition: Annotated[list[Path] | None, typer.Option("--definition", "-d",
                                                          help="A report definition (reports/*.yml); repeatable.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The .xlsx file (a directory for "
                                                "several workbooks; default output/).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only results from this date on (YYYY-MM-DD).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only hosts of this inventory group.")] = None,
    inventory: InventoryOpt = None, exceptions: ExceptionsOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Write Excel workbooks from the store: standard ones (--type) and your own (--definition)."""
    from patchwave.reporting.reports import write_reports

    paths = project_paths()
    if output is not None:
        _writable(output, "-o", folder=output.suffix != ".xlsx")
    result = write_reports(paths, _store(store), inventory or paths.lab_inventory, kind, definition or [], output,
                           since, group, exceptions, progress=lambda msg, _n: err.print(f"[dim]{escape(msg)}[/dim]"))
    if as_json:
        _emit_json(result)
    else:
        for book in result["workbooks"]:
            sheets = ", ".join(f"{s['sheet']} ({s['rows']:,})" for s in book["sheets"])
            err.print(f"[bold]{escape(str(book['workbook']))}[/bold]: {escape(sheets)}")


@app.command("demo")
def demo(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A fresh lab, then a full patch cycle in two waves on it, stored and written to a workbook.

    The lab is recreated (images stay cached) so that every demo starts from the old versions."""
    lab = _lab()
    lab.down()
    result = lab.up()
    err.print(f"lab ready in {result['seconds']}s: {len(result['hosts'])} hosts")
    status, _cycle_id, book = _run_cycle(store, None, None, 1)
    status["assessment"] = _demo_assessment(store)
    status["reports"] = _demo_reports(store)
    if not as_json:
        err.print("the lab stays up for a look around (inventories/lab/hosts.yml); `patchwave lab down` removes it")
    _report(status, book, as_json)


def _demo_reports(store: str | None) -> list[str]:
    """Every standard workbook from what the demo stored."""
    from patchwave.reporting.reports import write_reports

    paths = project_paths()
    result = write_reports(paths, _store(store), paths.lab_inventory, "all", [], None, None, None, None)
    books = [str(book["workbook"]) for book in result["workbooks"]]
    for book in books:
        err.print(f"workbook: [bold]{escape(book)}[/bold]")
    return books


def _demo_assessment(store: str | None) -> dict[str, Any]:
    """The demo's baseline assessment of the patched lab with the shipped profile."""
    from patchwave.assessment import run_assessment
    from patchwave.inventory import load_hosts
    from patchwave.reporting.workbook import write_assessment_workbook

    paths = project_paths()
    hosts = load_hosts(paths.lab_inventory)
    report = run_assessment(paths, _store(store), paths.lab_inventory, _baseline(None, None, hosts), hosts, _display())
    book = write_assessment_workbook(report, hosts, paths.output / f"baseline-{report['batch']}.xlsx")
    _print_assessment(report)
    err.print(f"baseline workbook: [bold]{escape(str(book))}[/bold]")
    return {"batch": report["batch"], "workbook": str(book),
            "hosts": [{k: h.get(k) for k in ("host", "ok", "score", "score_with_exceptions", "summary")}
                      for h in report["hosts"]]}


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
    return notify.notifier(_store(store), inv if inv.exists() else None, path,
                           log=lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))


@notify_app.command("check")
def notify_check(policy: NotifyFileOpt = None, inventory: InventoryOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a notification policy (and its groups against the inventory); send nothing."""
    sender = _notifier(None, inventory, policy)
    result = {"channels": {n: c.type for n, c in sender.policy.channels.items()},
              "routes": [{"name": r.name, "events": r.events, "channels": r.channels} for r in sender.policy.routes]}
    if as_json:
        _emit_json(result)
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
        _emit_json(counts)
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
        _emit_json({"queued": queued, **counts})
    else:
        err.print(f"{queued} queued; " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@notify_app.command("status")
def notify_status(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """The outbox (pending and given-up messages with their last error) and the tickets."""
    st = _store(store)
    rows = st.outbox_rows()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    waiting = [{k: row[k] for k in ("key", "channel", "op", "subject", "status", "attempts", "next_at", "last_error")}
               for row in rows if row["status"] in ("pending", "failed")]
    tickets = [{k: t[k] for k in ("key", "number", "state", "host", "subject", "reopened", "opened_at", "closed_at")}
               for t in st.tickets()]
    if as_json:
        _emit_json({"outbox": counts, "waiting": waiting, "tickets": tickets})
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
            table.add_row(*_cells(t["number"] or "(opening)", t["state"], t["host"], t["subject"], t["reopened"]))
        err.print(table)


ScheduleOpt = Annotated[Path | None, typer.Option("--schedule", "-s", envvar="PATCHWAVE_SCHEDULE",
                                                  help="Schedule (YAML, see docs/schedules.md).")]


def _schedule(path: Path | None, inventory: Path | None = None) -> Any:
    from patchwave import schedule as schedule_mod
    from patchwave.inventory import load_hosts

    if path is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    loaded = schedule_mod.load(path)
    if inventory is None:
        from patchwave.scheduler import inventory_of

        inventory = inventory_of(loaded, path, project_paths())
    if inventory.exists():
        schedule_mod.load(path, known_groups={g for h in load_hosts(inventory) for g in h.groups})
    return loaded


@app.command("discover")
def discover(inventory: InventoryOpt = None, schedule: ScheduleOpt = None, store: StoreOpt = None,
             act: Annotated[bool, typer.Option("--act/--no-act", help="Carry out the new-device policy now.")] = True,
             as_json: JsonOpt = False) -> None:
    """Compare the inventory with the store: new hosts, hosts gone or back, changed groups, device
    types or owners — recorded with the time; new hosts get the schedule's new-device policy."""
    from patchwave import assets
    from patchwave.scheduler import act_on_new

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    loaded = _schedule(schedule, inv) if schedule is not None else None
    st = _store(store)
    result = assets.discover(st, inv, loaded)
    result["acted"] = act_on_new(paths, st, inv, lambda msg: err.print(f"[dim]{escape(msg)}[/dim]")) if act else []
    if as_json:
        _emit_json(result)
        return
    err.print(escape(f"{result['hosts']} host(s) in {inv}; {len(result['changes'])} change(s)"))
    for change in result["changes"]:
        err.print(escape(f"  {change['kind']:8} {change['host']} {change['detail']}"
                         + (f" → {change['decision']}" if change["decision"] else "")))


@app.command("hosts")
def hosts_command(inventory: InventoryOpt = None, schedule: ScheduleOpt = None, store: StoreOpt = None,
                  overdue: Annotated[bool, typer.Option("--overdue", help="Only hosts overdue for a scheduled scan "
                                                        "or assessment, or never assessed.")] = False,
                  as_json: JsonOpt = False) -> None:
    """Every host with when it was last seen, scanned, assessed and patched."""
    from patchwave import assets

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    loaded = _schedule(schedule, inv) if schedule is not None else None
    rows = assets.freshness(_store(store), inv, loaded)
    if overdue:
        rows = [r for r in rows if r["overdue"] or r["never_assessed"]]
    if as_json:
        _emit_json(rows)
        return
    table = Table("host", "last seen", "scanned", "assessed", "patched", "overdue")

    def when(value: Any) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "never"

    for r in rows:
        table.add_row(*_cells(r["host"], when(r["last_seen"]), when(r["last_scanned"]), when(r["last_assessed"]),
                              when(r["last_patched"]), ", ".join(r["overdue"]) + (" (never assessed)" if r["never_assessed"]
                                                                                 else "")))
    err.print(table)


@schedule_app.command("run")
def schedule_run(schedule: ScheduleOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Run every job that is due now, once (for a cron job or a systemd timer)."""
    from patchwave.scheduler import run_due

    if schedule is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    loaded = _schedule(schedule)
    outcomes = run_due(project_paths(), _store(store), loaded, schedule,
                       lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))
    if as_json:
        _emit_json(outcomes)
    else:
        err.print(f"{len(outcomes)} job(s) due: " + (", ".join(f"{o['job']} {o['status']}" for o in outcomes)
                                                    or "nothing to do"))
    if any(o["status"] == "failed" for o in outcomes):
        raise typer.Exit(1)


@schedule_app.command("serve")
def schedule_serve(schedule: ScheduleOpt = None, store: StoreOpt = None,
                   check_every: Annotated[float, typer.Option(help="Seconds between two looks at the schedule.",
                                                              min=1)] = 60) -> None:
    """Run the scheduler for good: whatever is due, when it is due (stop with Ctrl-C / SIGTERM)."""
    import time

    from patchwave.scheduler import run_due

    if schedule is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    loaded = _schedule(schedule)
    st = _store(store)
    err.print(f"scheduler running: {len(loaded.jobs)} job(s); checking every {check_every:g} s")
    while True:
        run_due(project_paths(), st, loaded, schedule, lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))
        time.sleep(check_every)


@schedule_app.command("units")
def schedule_units(schedule: ScheduleOpt = None,
                   output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the unit files into "
                                                               "this directory (default: print them).")] = None,
                   every: Annotated[int, typer.Option(help="Minutes between two runs of `schedule run`.", min=1,
                                                      max=1440)] = 5,
                   ) -> None:
    """systemd service and timer units that run `patchwave schedule run` every few minutes."""
    from patchwave import schedule as schedule_mod

    if schedule is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    if output is not None:
        _writable(output, "--output", folder=True)
    _schedule(schedule)
    files = schedule_mod.units(schedule, project_paths().root, every)  # every unit checked before one is written
    for name, text in files.items():
        if output is None:
            sys.stdout.write(f"# {name}\n{text}\n")
            continue
        try:
            output.mkdir(parents=True, exist_ok=True)
            (output / name).write_text(text)
        except OSError as exc:
            raise InputError(f"--output {output}: cannot write {name}: {exc.strerror or exc}") from exc
        err.print(escape(f"wrote {output / name}"))


@agent_app.command("token")
def agent_token(host: Annotated[str, typer.Argument(help="The host (as named in the inventory).")],
                inventory: InventoryOpt = None, store: StoreOpt = None) -> None:
    """Make (or replace) a host's token for `patchwave serve`; printed once on stdout, only its
    SHA-256 is stored. Give it to the host through Ansible Vault or its environment."""
    from patchwave.agent import new_token
    from patchwave.inventory import load_hosts

    paths = project_paths()
    token = new_token(_store(store), host, load_hosts(inventory or paths.lab_inventory))
    sys.stdout.write(token + "\n")
    err.print(f"token for {host} stored (as its SHA-256); it is not shown again")


@app.command("serve")
def serve_command(
    listen: Annotated[str, typer.Option(help="ADDRESS:PORT to listen on.")] = "127.0.0.1:8787",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Certificate (PEM) for HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its private key (PEM).")] = None,
    inventory: InventoryOpt = None, baseline: BaselineOpt = None, store: StoreOpt = None,
    max_connections: Annotated[int, typer.Option(help="Connections open at once; when full, the oldest one "
                                                      "without a valid token gives way.", min=1, max=10000)] = 64,
    header_timeout: Annotated[float, typer.Option(help="Seconds from connect to the last request header "
                                                       "(TLS handshake included).", min=0.5, max=600)] = 10,
    idle_timeout: Annotated[float, typer.Option(help="Longest silence on a connection, in seconds.",
                                                min=0.5, max=3600)] = 30,
) -> None:
    """Receive scan and assessment results from hosts in agent mode (a token per host); they are
    stored exactly as results fetched over SSH. Runs until stopped. Each connection has its own
    thread, deadlines and a place under --max-connections (see docs/security.md)."""
    from patchwave.agent import Receiver, serve
    from patchwave.inventory import load_hosts

    paths = project_paths()
    hosts = load_hosts(inventory or paths.lab_inventory)
    receiver = Receiver(_store(store), hosts, _baseline(baseline, None, hosts),
                        lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))
    server = serve(receiver, listen, tls_cert, tls_key, max_connections=max_connections,
                   header_timeout=header_timeout, idle_timeout=idle_timeout)
    scheme = "https" if tls_cert else "http"
    err.print(escape(f"listening on {scheme}://{listen}/v1/results for {len(hosts)} host(s)"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    try:
        app()
    except PatchwaveError as exc:
        # the message may quote user input: escape it so that rich never reads it as markup
        err.print(f"[bold red]error:[/bold red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
