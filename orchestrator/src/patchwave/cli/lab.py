"""patchwave lab: the lab fleet of real Debian hosts (podman)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from patchwave.cli.common import JsonOpt, emit_json, err, lab_app
from patchwave.paths import project_paths


class LabContent(StrEnum):
    synthetic = "synthetic"
    real = "real"


ContentOpt = Annotated[LabContent, typer.Option(
    "--content", help="synthetic: the lab's own packages (6 hosts); real: Debian 11/12/13 hosts from the main suite "
                      "with the security archive's real updates on a lab mirror (9 hosts, inventories/lab-real).")]


def lab_for(kind: LabContent = LabContent.synthetic) -> Any:
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
    result = lab_for(content).up(hosts, base_port)
    if as_json:
        emit_json(result)
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
    result = lab_for(content).down(purge_images)
    if as_json:
        emit_json(result)
    else:
        err.print(f"lab down: removed {len(result['removed'])} item(s)")


@lab_app.command("status")
def lab_status(content: ContentOpt = LabContent.synthetic, as_json: JsonOpt = False) -> None:
    """Show the lab's hosts and whether their containers run."""
    result = lab_for(content).status()
    if as_json:
        emit_json(result)
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
