"""patchwave demo: a fresh lab, a patch cycle in waves, a baseline assessment and every workbook."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from patchwave.cli.baseline import print_assessment
from patchwave.cli.common import JsonOpt, StoreOpt, app, err, live_display, load_baseline, log_line, open_store
from patchwave.cli.cycle import report_cycle, run_cycle
from patchwave.cli.lab import lab_for
from patchwave.paths import project_paths


@app.command("demo")
def demo(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A fresh lab, then a full patch cycle in two waves on it, stored and written to a workbook.

    The lab is recreated (images stay cached) so that every demo starts from the old versions."""
    lab = lab_for()
    lab.down()
    result = lab.up()
    err.print(f"lab ready in {result['seconds']}s: {len(result['hosts'])} hosts")
    finished = run_cycle(store, None, None, 1)
    finished.report["assessment"] = _demo_assessment(store)
    finished.report["reports"] = _demo_reports(store)
    if not as_json:
        err.print("the lab stays up for a look around (inventories/lab/hosts.yml); `patchwave lab down` removes it")
    report_cycle(finished, as_json)


def _demo_reports(store: str | None) -> list[str]:
    """Every standard workbook from what the demo stored."""
    from patchwave.reporting.reports import write_reports

    paths = project_paths()
    result = write_reports(paths, open_store(store), paths.lab_inventory, "all", [], None, None, None, None)
    books = [str(book["workbook"]) for book in result["workbooks"]]
    for book in books:
        err.print(f"workbook: [bold]{escape(book)}[/bold]")
    return books


def _demo_assessment(store: str | None) -> dict[str, Any]:
    """The demo's baseline assessment of the patched lab with the shipped profile."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.baseline import service

    paths = project_paths()
    hosts = load_hosts(paths.lab_inventory)
    finished = service.assess(paths, open_store(store), paths.lab_inventory, load_baseline(None, None, hosts), hosts,
                              live_display(), log_line)
    report = finished.report
    print_assessment(report)
    err.print(f"baseline workbook: [bold]{escape(str(finished.workbook))}[/bold]")
    return {"batch": report["batch"], "workbook": str(finished.workbook),
            "hosts": [{k: h.get(k) for k in ("host", "ok", "score", "score_with_exceptions", "summary")}
                      for h in report["hosts"]]}
