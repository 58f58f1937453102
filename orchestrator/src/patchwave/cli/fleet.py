"""patchwave discover, hosts and schedule: the fleet, its freshness and the scheduler."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from patchwave.cli.common import (
    InventoryOpt,
    JsonOpt,
    StoreOpt,
    app,
    cells,
    emit_json,
    err,
    log_line,
    open_store,
    schedule_app,
    writable,
)
from patchwave.errors import InputError
from patchwave.paths import project_paths

ScheduleOpt = Annotated[Path | None, typer.Option("--schedule", "-s", envvar="PATCHWAVE_SCHEDULE",
                                                  help="Schedule (YAML, see docs/schedules.md).")]


def load_schedule(path: Path | None, inventory: Path | None = None) -> Any:
    from patchwave.ansible.inventory import load_hosts
    from patchwave.fleet import schedule as schedule_mod

    if path is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    loaded = schedule_mod.load(path)
    if inventory is None:
        from patchwave.fleet.scheduler import inventory_of

        inventory = inventory_of(loaded, path, project_paths())
    hosts = load_hosts(inventory) if inventory.exists() else []
    if hosts:
        schedule_mod.load(path, known_groups={g for h in hosts for g in h.groups})
    from patchwave.fleet.scheduler import organisation_baseline

    # the organisation's baseline and exceptions, and each assess job's own: a bad file stops here
    for job in [None, *(j for j in loaded.jobs if j.kind == "assess")]:
        baseline = organisation_baseline(loaded, path, job)
        if hosts:
            baseline.check_inventory(hosts, layers=bool((job and job.baseline) or loaded.baseline))
    return loaded


@app.command("discover")
def discover(inventory: InventoryOpt = None, schedule: ScheduleOpt = None, store: StoreOpt = None,
             act: Annotated[bool, typer.Option("--act/--no-act", help="Carry out the new-device policy now.")] = True,
             as_json: JsonOpt = False) -> None:
    """Compare the inventory with the store: new hosts, hosts gone or back, changed groups, device
    types or owners — recorded with the time; new hosts get the schedule's new-device policy."""
    from patchwave.fleet import discover
    from patchwave.fleet.scheduler import act_on_new

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    loaded = load_schedule(schedule, inv) if schedule is not None else None
    st = open_store(store)
    result = discover.discover(st, inv, loaded)
    result["acted"] = act_on_new(paths, st, inv, log_line, loaded, schedule) if act else []
    if as_json:
        emit_json(result)
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
    from patchwave.fleet import discover

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    loaded = load_schedule(schedule, inv) if schedule is not None else None
    rows = discover.freshness(open_store(store), inv, loaded)
    if overdue:
        rows = [r for r in rows if r["overdue"] or r["never_assessed"]]
    if as_json:
        emit_json(rows)
        return
    table = Table("host", "last seen", "scanned", "assessed", "patched", "overdue")

    def when(value: Any) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "never"

    for r in rows:
        table.add_row(*cells(r["host"], when(r["last_seen"]), when(r["last_scanned"]), when(r["last_assessed"]),
                              when(r["last_patched"]), ", ".join(r["overdue"]) + (" (never assessed)" if r["never_assessed"]
                                                                                 else "")))
    err.print(table)


@schedule_app.command("run")
def schedule_run(schedule: ScheduleOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Run every job that is due now, once (for a cron job or a systemd timer)."""
    from patchwave.fleet.scheduler import run_due

    if schedule is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    loaded = load_schedule(schedule)
    outcomes = run_due(project_paths(), open_store(store), loaded, schedule,
                       log_line)
    if as_json:
        emit_json(outcomes)
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

    from patchwave.fleet.scheduler import run_due

    if schedule is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    loaded = load_schedule(schedule)
    st = open_store(store)
    err.print(f"scheduler running: {len(loaded.jobs)} job(s); checking every {check_every:g} s")
    while True:
        run_due(project_paths(), st, loaded, schedule, log_line)
        time.sleep(check_every)


@schedule_app.command("units")
def schedule_units(schedule: ScheduleOpt = None,
                   output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the unit files into "
                                                               "this directory (default: print them).")] = None,
                   every: Annotated[int, typer.Option(help="Minutes between two runs of `schedule run`.", min=1,
                                                      max=1440)] = 5,
                   ) -> None:
    """systemd service and timer units that run `patchwave schedule run` every few minutes."""
    from patchwave.fleet import schedule as schedule_mod

    if schedule is None:
        raise InputError("no schedule: give --schedule FILE or set PATCHWAVE_SCHEDULE (see docs/schedules.md)")
    if output is not None:
        writable(output, "--output", folder=True)
    load_schedule(schedule)
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
