"""Baseline profiles: layers for a host (organisation standard → device type → group → host) over
included rule files, with the exceptions register; compiled per host into the flat rule list
assess_baseline evaluates.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from patchwave import yamlsrc
from patchwave.baseline.exceptions import Exception_, ExceptionsFile
from patchwave.baseline.rules import (
    DOCS,
    BaselineError,
    LoadedRule,
    Rule,
    RuleFile,
    Sourced,
    build_rule,
    load_rule_file,
    read_mapping,
)
from patchwave.models import Host

SHIPPED = Path(__file__).parent / "profiles"  # `include: [patchwave:debian-server.yml]`


class _Model(BaseModel):
    model_config = yamlsrc.STRICT


DEFAULT_PROFILE = SHIPPED / "profile.yml"


class Layer(_Model):
    include: list[str] = []
    parameters: dict[str, Any] = {}
    disable: dict[str, Annotated[str, Field(min_length=3)]] = {}


class Profile(Layer):
    version: Literal[1] = 1
    name: Annotated[str, Field(min_length=1)]
    device_types: dict[str, Layer] = {}
    groups: dict[str, Layer] = {}
    hosts: dict[str, Layer] = {}


class Compiled:
    """The rules for one host, ready for assess_baseline, and what was disabled where."""

    def __init__(self, host: str, rules: list[Rule], disabled: list[dict[str, str]], exceptions: dict[str, Exception_],
                 ) -> None:
        self.host, self.rules, self.disabled, self.exceptions = host, rules, disabled, exceptions

    def module_rules(self) -> list[dict[str, Any]]:
        out = []
        for rule in self.rules:
            check = rule.check.model_dump(exclude_none=True)
            kind = check.pop("type")
            item: dict[str, Any] = {"id": rule.id, "type": kind, "args": check,
                                    "applies": rule.applies.model_dump()}
            if rule.timeout:
                item["timeout"] = rule.timeout
            exception = self.exceptions.get(rule.id)
            if exception is not None:
                item["exception"] = {"id": exception.id, "expires": exception.expires}
            out.append(item)
        return out


class Baseline:
    """A profile with its rule files and the exceptions register, loaded and validated."""

    def __init__(self, profile_path: Path, exceptions_path: Path | None = None) -> None:
        self.path = profile_path
        data = read_mapping(profile_path, "baseline")
        if "rules" in data and "include" not in data:
            # a rule file used directly as the whole baseline
            data = yamlsrc.Located({"version": 1, "name": data.get("name", profile_path.stem),
                                    "include": [profile_path.name]})
            data.line, data.key_lines = 1, {"include": 1}
        self.data = data
        self.profile = yamlsrc.validate(Profile, data, profile_path, "profile", DOCS, BaselineError)
        self.files: dict[str, tuple[RuleFile, list[LoadedRule], dict[str, Sourced]]] = {}
        for loc, layer in self._layers():
            for index, name in enumerate(layer.include):
                if name not in self.files:
                    target = (SHIPPED / name.removeprefix("patchwave:") if name.startswith("patchwave:")
                              else profile_path.parent / name).resolve()
                    if not target.is_file():
                        raise BaselineError(f"{yamlsrc.where(profile_path, data, (*loc, 'include', index))}: "
                                            f"include {name}: no such file (relative to {profile_path.parent})")
                    self.files[name] = load_rule_file(target)
        known = {r.id for _f, rules, _p in self.files.values() for r in rules}
        for loc, layer in self._layers():
            for rule_id in layer.disable:
                if rule_id not in known:
                    raise BaselineError(f"{yamlsrc.where(profile_path, data, (*loc, 'disable', rule_id))}: "
                                        f"disable: no rule {rule_id!r} in the included rule files")
        self.exceptions: list[tuple[Exception_, str]] = []
        if exceptions_path is not None:
            edata = read_mapping(exceptions_path, "exceptions register")
            register = yamlsrc.validate(ExceptionsFile, edata, exceptions_path, "exceptions", DOCS, BaselineError)
            for index, item in enumerate(register.exceptions):
                where = yamlsrc.where(exceptions_path, edata, ("exceptions", index, "rule"))
                if item.rule not in known:
                    raise BaselineError(f"{where}: exceptions[{index}].rule: no rule {item.rule!r} in the baseline")
                self.exceptions.append((item, yamlsrc.where(exceptions_path, edata, ("exceptions", index))))

    def _layers(self) -> list[tuple[tuple[str | int, ...], Layer]]:
        layers: list[tuple[tuple[str | int, ...], Layer]] = [((), self.profile)]
        layers += [(("device_types", k), v) for k, v in self.profile.device_types.items()]
        layers += [(("groups", k), v) for k, v in self.profile.groups.items()]
        layers += [(("hosts", k), v) for k, v in self.profile.hosts.items()]
        return layers

    def check_inventory(self, hosts: list[Host], layers: bool = True) -> None:
        """Layer and exception names must exist in the inventory (layers: not for the shipped
        default profile, whose device-type layers apply where such hosts exist)."""
        groups = {g for h in hosts for g in h.groups}
        names = {h.name for h in hosts}
        kinds = {h.device_type for h in hosts if h.device_type}
        checked = (("device_types", kinds, "device type"), ("groups", groups, "group"), ("hosts", names, "host"))
        for key, known, what in checked if layers else ():
            for name in getattr(self.profile, key):
                if name not in known:
                    raise BaselineError(f"{yamlsrc.where(self.path, self.data, (key, name))}: {key}.{name}: unknown "
                                        f"{what} {name!r}; the inventory has {', '.join(sorted(known)) or 'none'}")
        for item, where in self.exceptions:
            for host in item.scope.hosts:
                if not any(fnmatchcase(n, host) for n in names):
                    raise BaselineError(f"{where}: exception {item.id}: scope host {host!r} matches no inventory host")
            for group in item.scope.groups:
                if group not in groups:
                    raise BaselineError(f"{where}: exception {item.id}: scope group {group!r} is not an inventory group")

    def compile(self, host: Host) -> Compiled:
        stack: list[tuple[str, Layer, tuple[str | int, ...]]] = [("standard", self.profile, ())]
        if host.device_type in self.profile.device_types:
            stack.append((f"device type {host.device_type}", self.profile.device_types[host.device_type],
                          ("device_types", host.device_type)))
        for group in sorted(set(host.groups) & set(self.profile.groups)):
            stack.append((f"group {group}", self.profile.groups[group], ("groups", group)))
        if host.name in self.profile.hosts:
            stack.append((f"host {host.name}", self.profile.hosts[host.name], ("hosts", host.name)))
        chosen: dict[str, LoadedRule] = {}
        params: dict[str, Sourced] = {}
        disabled: dict[str, dict[str, str]] = {}
        for label, layer, loc in stack:
            for name in layer.include:
                _file, included, defaults = self.files[name]
                for key, value in defaults.items():
                    params.setdefault(key, value)
                for rule in included:
                    chosen[rule.id] = rule
            for key, value in layer.parameters.items():
                params[key] = Sourced(value, self.path, self.data, (*loc, "parameters", key))
            for rule_id, reason in layer.disable.items():
                disabled[rule_id] = {"id": rule_id, "layer": label, "reason": reason}
        rules = [build_rule(r, params) for rid, r in chosen.items() if rid not in disabled]
        exceptions: dict[str, Exception_] = {}
        for item, _where in self.exceptions:
            if any(fnmatchcase(host.name, p) for p in item.scope.hosts) or set(item.scope.groups) & set(host.groups):
                current = exceptions.get(item.rule)
                if current is None or item.expiry > current.expiry:
                    exceptions[item.rule] = item
        return Compiled(host.name, rules, sorted(disabled.values(), key=lambda d: d["id"]), exceptions)

    def rules_by_id(self) -> dict[str, Rule]:
        """Every rule with the rule files' own defaults (for reports: titles, severities)."""
        return {r.id: build_rule(r, params) for _f, rules, params in self.files.values() for r in rules}
