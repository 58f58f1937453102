"""patchwave report: Excel workbooks from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from patchwave.cli.common import ExceptionsOpt, InventoryOpt, JsonOpt, StoreOpt, app, emit_json, err, open_store, writable
from patchwave.paths import project_paths


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
        writable(output, "-o", folder=output.suffix != ".xlsx")
    result = write_reports(paths, open_store(store), inventory or paths.lab_inventory, kind, definition or [], output,
                           since, group, exceptions, progress=lambda msg, _n: err.print(f"[dim]{escape(msg)}[/dim]"))
    if as_json:
        emit_json(result)
    else:
        for book in result["workbooks"]:
            sheets = ", ".join(f"{s['sheet']} ({s['rows']:,})" for s in book["sheets"])
            err.print(f"[bold]{escape(str(book['workbook']))}[/bold]: {escape(sheets)}")
