"""Hosts of an inventory as domain objects (groups, device type, owner, criticality)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patchwave.errors import InputError
from patchwave.models import Host
from patchwave.runner import read_inventory


def load_hosts(inventory: Path) -> list[Host]:
    data = read_inventory(inventory)
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    groups: dict[str, list[str]] = {}

    def walk(group: str, seen: tuple[str, ...]) -> list[str]:
        node = data.get(group, {})
        members = list(node.get("hosts", []))
        for child in node.get("children", []):
            if child not in seen:
                members += walk(child, (*seen, child))
        return members

    for group in data:
        if group in ("_meta", "all", "ungrouped"):
            continue
        for host in walk(group, (group,)):
            groups.setdefault(host, [])
            if group not in groups[host]:
                groups[host].append(group)
    names = sorted(set(hostvars) | set(groups))
    if not names:
        raise InputError(f"{inventory}: the inventory has no hosts")
    hosts = []
    for name in names:
        hv = hostvars.get(name, {})
        try:
            criticality = int(hv.get("patchwave_criticality", 0))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{inventory}: host {name}: patchwave_criticality must be an integer") from exc
        hosts.append(Host(name=name, groups=tuple(groups.get(name, [])), device_type=str(hv.get("patchwave_device_type", "")),
                          owner=str(hv.get("patchwave_owner", "")), criticality=criticality,
                          release=str(hv.get("patchwave_release", ""))))
    return hosts
