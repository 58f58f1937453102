"""What every command group shares: the apps, the console, the common options, opening the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from patchwave.errors import InputError
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


def log_line(message: str) -> None:
    """Where what the services and the scheduler say goes: stderr, dimmed, never read as markup."""
    err.print(f"[dim]{escape(message)}[/dim]")


def cells(*values: Any) -> list[str]:
    """Table cells from data (host messages, names, comments, paths): shown as text, never read
    as rich markup (a `[/x]` in an Ansible message would otherwise stop the command)."""
    return [escape(str(v)) for v in values]


def writable(target: Path, option: str, folder: bool = False) -> Path:
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


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


StoreOpt = Annotated[str | None, typer.Option("--store", envvar="PATCHWAVE_STORE",
                                             help="SQLAlchemy URL of the store (default: SQLite in .patchwave/).")]
InventoryOpt = Annotated[Path | None, typer.Option("--inventory", "-i", help="Inventory (default: the lab's).")]
AdvisoriesOpt = Annotated[Path | None, typer.Option("--advisories", help="OSV advisory file or directory.")]


def open_store(url: str | None) -> Any:
    from patchwave.store import Store

    return Store(url or project_paths().store_url)


def live_display() -> Any:
    """Live per-host progress on a terminal, plain lines in logs and pipes."""
    from patchwave.progress import Display

    return Display(err)


BaselineOpt = Annotated[Path | None, typer.Option("--baseline", "-b",
                                                  help="Baseline profile or rule file (default: the shipped profile).")]
ExceptionsOpt = Annotated[Path | None, typer.Option("--exceptions", "-e", help="Exceptions register (YAML).")]
LimitOpt = Annotated[list[str] | None, typer.Option("--limit", "-l", help="Only this host (repeatable).")]


def load_baseline(profile: Path | None, exceptions: Path | None, hosts: list[Any]) -> Any:
    from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline

    baseline = Baseline(profile or DEFAULT_PROFILE, exceptions)
    baseline.check_inventory(hosts, layers=profile is not None)
    return baseline
