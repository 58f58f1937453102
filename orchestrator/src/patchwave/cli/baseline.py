"""patchwave assess and patchwave remediate: baseline assessments and remediation."""

from __future__ import annotations

import json
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
    LimitOpt,
    StoreOpt,
    app,
    cells,
    emit_json,
    err,
    live_display,
    load_baseline,
    log_line,
    open_store,
    writable,
)
from patchwave.errors import InputError
from patchwave.paths import project_paths


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
    from patchwave.ansible.inventory import load_hosts
    from patchwave.baseline import service
    from patchwave.baseline.assessment import compile_rules, rules_document, select_hosts

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    if compile_to is not None:
        writable(compile_to, "--compile")
    hosts = select_hosts(inv, limit)
    loaded = load_baseline(baseline, exceptions, load_hosts(inv))
    if compile_to is not None:
        document = json.dumps(rules_document(compile_rules(loaded, hosts)), indent=1, sort_keys=True) + "\n"
        try:
            compile_to.write_text(document)
        except OSError as exc:
            raise InputError(f"--compile {compile_to}: cannot write it: {exc.strerror or exc}") from exc
        err.print(escape(f"compiled rules for {len(hosts)} host(s): {compile_to}"))
        return
    finished = service.assess(paths, open_store(store), inv, loaded, hosts, live_display(), log_line)
    report = finished.report
    if as_json:
        emit_json(report)
    else:
        print_assessment(report)
        err.print(f"baseline workbook: [bold]{escape(str(finished.workbook))}[/bold]")
    for h in report["hosts"]:  # on stderr even with --json: someone must see it at once
        for line in (h.get("drift") or {}).get("critical", []):
            err.print(f"[bold red]CRITICAL DRIFT[/bold red] {h['host']}: {escape(line)}", highlight=False)
    if finished.exit_code:
        raise typer.Exit(finished.exit_code)


def print_assessment(report: dict[str, Any]) -> None:
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
    from patchwave.ansible.inventory import load_hosts
    from patchwave.baseline import service
    from patchwave.baseline.assessment import select_hosts

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    hosts = select_hosts(inv, limit)
    loaded = load_baseline(baseline, exceptions, load_hosts(inv))
    finished = service.remediate(paths, open_store(store), inv, loaded, hosts, check, live_display(), log_line)
    report = finished.report
    if as_json:
        emit_json(report)
    else:
        table = Table("host", "rule", "result", "what", title=f"remediation {report['batch']}"
                      + (" (check mode: nothing changed)" if check else ""))
        for h in report["hosts"]:
            if not h["ok"]:
                table.add_row(escape(h["host"]), "", "[red]failed[/red]", escape(h["message"]))
            for r in h["results"]:
                what = "; ".join(r["actions"]) or r["message"]
                table.add_row(*cells(h["host"], r["id"], r["status"], what))
        err.print(table)
        for h in report["hosts"]:
            if h["score_after"] is not None:
                err.print(escape(f"{h['host']}: score {h['score_before']}% → {h['score_after']}%; still failing: "
                                 f"{len(h['still_failing'])}"))
    if finished.exit_code:
        raise typer.Exit(finished.exit_code)
