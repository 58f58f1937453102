"""The `patchwave` command line. Machine output (--json) goes to stdout, everything else to stderr."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from patchwave.errors import PatchwaveError
from patchwave.paths import project_paths

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Agentless patch and configuration management.")
lab_app = typer.Typer(no_args_is_help=True, help="The lab fleet of real Debian hosts (podman).")
cycle_app = typer.Typer(no_args_is_help=True, help="Patch cycles: plan, run in waves, status.")
app.add_typer(lab_app, name="lab")
app.add_typer(cycle_app, name="cycle")

err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _lab() -> Any:
    from patchwave.lab.fleet import Lab

    return Lab(project_paths(), log=lambda msg: err.print(f"[dim]lab:[/dim] {msg}"))


@lab_app.command("up")
def lab_up(
    hosts: Annotated[int | None, typer.Option(help="Number of hosts (default 6).", min=1, max=60)] = None,
    base_port: Annotated[int | None, typer.Option(help="First 127.0.0.1 port for sshd.", min=1024, max=65000)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build (cached) images and the signed repository, start the hosts, write the inventory."""
    result = _lab().up(hosts, base_port)
    if as_json:
        _emit_json(result)
    else:
        err.print(f"lab {'changed' if result['changed'] else 'already up, nothing changed'} "
                  f"in {result['seconds']}s; inventory: {result['inventory']}")
        _print_hosts(result["hosts"])


@lab_app.command("down")
def lab_down(
    purge_images: Annotated[bool, typer.Option(help="Also remove the cached lab images.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove every container, network and file the lab made."""
    result = _lab().down(purge_images)
    if as_json:
        _emit_json(result)
    else:
        err.print(f"lab down: removed {len(result['removed'])} item(s)")


@lab_app.command("status")
def lab_status(as_json: JsonOpt = False) -> None:
    """Show the lab's hosts and whether their containers run."""
    result = _lab().status()
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


def main() -> None:
    try:
        app()
    except PatchwaveError as exc:
        err.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False)
        sys.exit(exc.exit_code)
