"""Hosts of an inventory as domain objects (groups, device type, owner, criticality).

The inventory is Ansible's (any format, read by `ansible-inventory`), but what Patchwave takes
from it is checked like any other input: host and group names it can pass in a `--limit`, and
the `patchwave_*` variables it reads as plain text, never a template (a `{{ lookup('pipe', ...) }}`
there would run on the controller the moment some layer rendered it). YAML files are checked
for size, encoding and alias bombs before Ansible builds them (`ansible-inventory --list` would
write out every value an alias stands for)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from patchwave import yamlsrc
from patchwave.ansible.runner import read_inventory
from patchwave.errors import InputError
from patchwave.models import Host

# inventories are bigger than Patchwave's own files (10,000 hosts are a few MB), so their bounds are too
MAX_BYTES = 64 * 1024 * 1024
MAX_NODES = 50_000_000
MAX_ALIAS_NODES = 1_000_000
_YAML = (".yml", ".yaml")
# what a host name may be: a DNS name, an IPv4 or IPv6 address, an inventory alias. Nothing that
# means something in a --limit pattern (`,` `:` ranges aside: `!` `&` `~` `*` `?`, spaces)
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,252}$")
_GROUP = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TEXT_VARS = {"patchwave_owner": "owner", "patchwave_device_type": "device_type", "patchwave_release": "release"}


def yaml_sources(inventory: Path) -> list[Path]:
    """The YAML files Ansible reads for this inventory: the file itself (or a directory's YAML
    files) and the group_vars/host_vars beside it."""
    if not inventory.exists():
        return []  # read_inventory says so
    base = inventory if inventory.is_dir() else inventory.parent
    found = [inventory] if inventory.is_file() and inventory.suffix in _YAML else []
    if inventory.is_dir():
        found += sorted(p for p in inventory.iterdir() if p.is_file() and p.suffix in _YAML)
    for folder in (base / "group_vars", base / "host_vars"):
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix in _YAML or not p.suffix))
    return found


def _line(inventory: Path, *searches: tuple[str, ...]) -> str:
    """`file:line` of the first line of the inventory file that holds every needle of the first
    search that finds one (best effort: Ansible does not say where a value came from); just
    the path when none does (a directory, a plugin)."""
    if inventory.is_file():
        try:
            text = yamlsrc.read_text(inventory, MAX_BYTES).splitlines()
        except InputError:
            return str(inventory)
        for needles in searches:
            for number, line in enumerate(text, 1):
                if all(n in line for n in needles):
                    return f"{inventory}:{number}"
    return str(inventory)


def _refuse_name(inventory: Path, kind: str, name: str, pattern: re.Pattern[str]) -> None:
    marker = yamlsrc.template_marker(name)
    if marker is not None:
        raise InputError(f"{_line(inventory, (name,))}: {kind} name {name!r} holds {marker!r}, Jinja template syntax: "
                         "a name is never a template")
    if not pattern.match(name):
        raise InputError(f"{_line(inventory, (name,))}: {kind} name {name!r}: use letters, digits and . _ - (and : in "
                         "addresses); no spaces or characters that mean something in a host pattern (! & ~ * ? ,)")


def _refuse_pattern(inventory: Path, name: str, groups: set[str]) -> None:
    """A host name must mean that one host in a --limit: Ansible splits a pattern on `:` (so
    `web1:all` would be every host) unless it is an IPv6 address, and a name that is also a
    group's (or `all`) selects the whole group."""
    import ipaddress

    if ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise InputError(f"{_line(inventory, (name,))}: host name {name!r}: ':' separates host patterns in a "
                             "limit; only an IPv6 address may hold it") from None
    if name in groups:
        raise InputError(f"{_line(inventory, (name,))}: host name {name!r} is also a group's name: a limit to the "
                         "host would select the whole group; rename one of them")


def _text(inventory: Path, host: str, var: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{_line(inventory, (host, var), (var,))}: host {host}: {var} must be text, not {type(value).__name__} "
                         "(quote it)")
    text = str(value)
    marker = yamlsrc.template_marker(text)
    if marker is not None:
        raise InputError(f"{_line(inventory, (var, text[:40]), (host, var), (var,))}: host {host}: {var} holds "
                         f"{marker!r}, Jinja template syntax: Patchwave reads {var} as plain text (put the value "
                         "itself in the inventory)")
    if _CONTROL.search(text):
        raise InputError(f"{_line(inventory, (var, text[:40]), (host, var), (var,))}: host {host}: {var} has a "
                         "control character (a line break, an escape sequence): one line of printable text")
    return text


def _criticality(inventory: Path, host: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
        return int(value)
    raise InputError(f"{_line(inventory, (host, 'patchwave_criticality'), ('patchwave_criticality',))}: host {host}: "
                     f"patchwave_criticality must be an integer, not {str(value)[:40]!r}")


def load_hosts(inventory: Path, cache: Path | None = None) -> list[Host]:
    """The inventory's hosts, checked. With `cache` (a directory), a static inventory file (no
    plugin, no script) is read by Ansible once per content: the hosts are kept there under a
    key made of every file Ansible reads for it, the Ansible configuration and version, and the
    ANSIBLE_* environment, so any change to one of them reads it again."""
    key = _cache_key(inventory) if cache is not None else None
    if cache is not None and key is not None:
        kept = _cached(cache, inventory, key)
        if kept is not None:
            return kept
    hosts = _load_hosts(inventory)
    if cache is not None and key is not None:
        _keep(cache, inventory, key, hosts)
    return hosts


def _ansible_config() -> Path | None:
    """The configuration file Ansible uses, found as Ansible finds it."""
    import os

    named = os.environ.get("ANSIBLE_CONFIG")
    for candidate in ([Path(named)] if named else []) + [Path.cwd() / "ansible.cfg", Path.home() / ".ansible.cfg",
                                                       Path("/etc/ansible/ansible.cfg")]:
        if candidate.is_file():
            return candidate
    return None


def _cache_key(inventory: Path) -> str | None:
    """The key of a static inventory file's hosts, or None when what Ansible would read cannot be
    known from files (a plugin configuration, an executable script, a directory, vars plugins
    other than Ansible's own group_vars/host_vars)."""
    import hashlib
    import os
    from importlib.metadata import version

    if not inventory.is_file() or os.access(inventory, os.X_OK):
        return None
    try:
        text = inventory.read_bytes()
    except OSError:
        return None
    if inventory.suffix in _YAML and re.search(rb"^plugin\s*:", text, re.MULTILINE):
        return None
    config = _ansible_config()
    config_text = config.read_bytes() if config is not None else b""
    environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("ANSIBLE_"))
    if b"vars_plugins_enabled" in config_text or any(k == "ANSIBLE_VARS_ENABLED" for k, _v in environment):
        return None
    digest = hashlib.sha256()
    for part in (f"patchwave-hosts-1 {version('ansible-core')} {inventory.resolve()}".encode(), config_text,
                 repr(environment).encode(), text):
        digest.update(hashlib.sha256(part).digest())
    try:
        for folder in (inventory.parent / "group_vars", inventory.parent / "host_vars"):
            if folder.is_dir():
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    digest.update(hashlib.sha256(str(path).encode() + b"\0" + path.read_bytes()).digest())
    except OSError:
        return None  # Ansible will say what it cannot read
    return digest.hexdigest()


def _cache_file(cache: Path, inventory: Path) -> Path:
    import hashlib

    return cache / f"hosts-{hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]}.json"


def _cached(cache: Path, inventory: Path, key: str) -> list[Host] | None:
    import json

    try:
        kept = json.loads(_cache_file(cache, inventory).read_text())
        if kept.get("key") != key:
            return None
        return [Host(name=h["name"], groups=tuple(h["groups"]), device_type=h["device_type"], owner=h["owner"],
                     criticality=h["criticality"], release=h["release"]) for h in kept["hosts"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # none kept, or unreadable: read the inventory


def _keep(cache: Path, inventory: Path, key: str, hosts: list[Host]) -> None:
    """Only what Patchwave took from the inventory (names, groups, its own variables), never the
    host variables themselves; readable by the owner only."""
    import contextlib
    import json
    import os
    import tempfile

    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"key": key, "hosts": [{"name": h.name, "groups": list(h.groups), "device_type": h.device_type,
                                       "owner": h.owner, "criticality": h.criticality, "release": h.release}
                                      for h in hosts]}
        handle, name = tempfile.mkstemp(dir=cache, prefix=".hosts-")
        with os.fdopen(handle, "w") as out:
            json.dump(data, out)
        Path(name).replace(_cache_file(cache, inventory))


def _load_hosts(inventory: Path) -> list[Host]:
    for source in yaml_sources(inventory):
        yamlsrc.check_file(source, MAX_BYTES, MAX_NODES, MAX_ALIAS_NODES)
    data = read_inventory(inventory)
    meta = data.get("_meta", {})
    hostvars: dict[str, dict[str, Any]] = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
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
        _refuse_name(inventory, "group", group, _GROUP)
        for host in walk(group, (group,)):
            groups.setdefault(host, [])
            if group not in groups[host]:
                groups[host].append(group)
    ungrouped = data.get("ungrouped", {})
    names = sorted(set(hostvars) | set(groups) | set(ungrouped.get("hosts", []) if isinstance(ungrouped, dict) else []))
    if not names:
        where = f"{inventory}:1" if inventory.is_file() else str(inventory)
        raise InputError(f"{where}: the inventory has no hosts (or Ansible could not parse it: try "
                         f"`ansible-inventory -i {inventory} --list`)")
    hosts = []
    group_names = {g for g in data if g != "_meta"} | {"all", "ungrouped"}
    for name in names:
        _refuse_name(inventory, "host", name, _HOST)
        _refuse_pattern(inventory, name, group_names)
        hv = hostvars.get(name, {})
        text = {field: _text(inventory, name, var, hv.get(var)) for var, field in TEXT_VARS.items()}
        hosts.append(Host(name=name, groups=tuple(groups.get(name, [])), device_type=text["device_type"],
                          owner=text["owner"], criticality=_criticality(inventory, name, hv.get("patchwave_criticality")),
                          release=text["release"]))
    return hosts
