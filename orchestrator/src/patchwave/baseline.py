"""Configuration baselines: rule files, layered profiles and the exceptions register — all YAML,
validated before anything runs, every error `file:line: where: what to fix`.

A *rule file* holds rules (id, title, severity, references, applicability, one check, an
optional remediation) and default parameters. A *profile* stacks layers for a host:
organisation standard → device type → group → host; each layer may include rule files (a rule
with an id already present replaces it), override parameters and disable rules with a reason.
Compiling a profile for a host gives the flat rule list the `assess_baseline` module evaluates,
with every `$parameter` filled in and the host's exception attached to its rule.
"""

from __future__ import annotations

import re
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.errors import InputError
from patchwave.models import Host

DOCS = "docs/baselines.md"
SHIPPED = Path(__file__).parent / "baselines"  # `include: [patchwave:debian-server.yml]`
DEFAULT_PROFILE = SHIPPED / "profile.yml"
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$"
_PARAM = re.compile(r"^\$([a-z][a-z0-9_]*)$")
_PACKAGE = re.compile(r"^[a-z0-9*?][a-z0-9+.*?\-]*$")
_UNIT = yamlsrc.UNIT_NAME
_SYSCTL = re.compile(r"^[a-z0-9_]+([./][a-zA-Z0-9_\-]+)+$")
_MODULE = re.compile(r"^[a-z0-9_\-]+$")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_.\-]*\$?$")


class BaselineError(InputError):
    pass


class _Model(BaseModel):
    model_config = yamlsrc.STRICT


def _abs_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value or "\n" in value or "/../" in value + "/":
        raise ValueError(f"{value!r} is not an absolute path")
    return value


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


class _Compare(_Model):
    """How a value is judged: exactly one of value, one_of, regex, min/max, absent."""

    value: str | int | None = None
    one_of: list[str] | None = None
    regex: str | None = None
    min: int | None = None
    max: int | None = None
    absent: bool = False
    missing_ok: bool = False
    ignore_case: bool = True

    @field_validator("regex")
    @classmethod
    def _re(cls, value: str | None) -> str | None:
        return _regex(value)

    @model_validator(mode="after")
    def _one(self) -> _Compare:
        given = [k for k in ("value", "one_of", "regex", "absent") if getattr(self, k) not in (None, False)]
        if self.min is not None or self.max is not None:
            given.append("min/max")
        if len(given) > 1:
            raise ValueError(f"give one of value, one_of, regex, min/max, absent (not {', '.join(given)})")
        return self


class FileCheck(_Model):
    type: Literal["file"]
    path: str
    state: Literal["present", "absent"] = "present"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _abs_path(value)


class FileModeCheck(_Model):
    type: Literal["file_mode"]
    paths: Annotated[list[str], Field(min_length=1)]
    owner: str | None = None
    group: str | list[str] | None = None
    mode: Annotated[str, Field(pattern=r"^0?[0-7]{3,4}$")] | None = None
    require: bool = False

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        return [_abs_path(v) for v in value]

    @model_validator(mode="after")
    def _something(self) -> FileModeCheck:
        if self.owner is None and self.group is None and self.mode is None:
            raise ValueError("file_mode needs at least one of owner, group, mode")
        return self


class FileContentCheck(_Model):
    type: Literal["file_content"]
    path: str | list[str]
    regex: str | None = None
    line: str | None = None
    state: Literal["present", "absent"] = "present"
    multiline: bool = False

    @field_validator("path")
    @classmethod
    def _paths(cls, value: str | list[str]) -> str | list[str]:
        return _abs_path(value) if isinstance(value, str) else [_abs_path(v) for v in value]

    @field_validator("regex")
    @classmethod
    def _re(cls, value: str | None) -> str | None:
        return _regex(value)

    @model_validator(mode="after")
    def _one(self) -> FileContentCheck:
        if (self.regex is None) == (self.line is None):
            raise ValueError("file_content needs exactly one of regex, line")
        return self


class ConfigValueCheck(_Compare):
    type: Literal["config_value"]
    path: str | list[str]
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    separator: Literal[" ", "="] = " "
    first_wins: bool = False
    comment: Literal["#", ";"] = "#"

    @field_validator("path")
    @classmethod
    def _paths(cls, value: str | list[str]) -> str | list[str]:
        return _abs_path(value) if isinstance(value, str) else [_abs_path(v) for v in value]


class SshdCheck(_Compare):
    type: Literal["sshd"]
    key: Annotated[str, Field(pattern=r"^[a-z0-9]+$")]
    contains: list[str] | None = None
    forbid: list[str] | None = None


class SysctlCheck(_Model):
    type: Literal["sysctl"]
    key: Annotated[str, Field(pattern=_SYSCTL.pattern)]
    value: str | int
    scope: Literal["runtime", "persisted", "both"] = "both"


class KernelModuleCheck(_Model):
    type: Literal["kernel_module"]
    name: Annotated[str, Field(pattern=_MODULE.pattern)]
    blacklist_enough: bool = False


class MountCheck(_Model):
    type: Literal["mount"]
    mount: str
    options: list[Annotated[str, Field(pattern=r"^[a-z0-9_=]+$")]] = []
    require_mount: bool = False

    @field_validator("mount")
    @classmethod
    def _path(cls, value: str) -> str:
        return _abs_path(value)


class PackageCheck(_Model):
    type: Literal["package"]
    name: str | list[str]
    state: Literal["installed", "absent"] = "installed"
    any: bool = False

    @field_validator("name")
    @classmethod
    def _names(cls, value: str | list[str]) -> str | list[str]:
        for item in [value] if isinstance(value, str) else value:
            if not _PACKAGE.match(item):
                raise ValueError(f"{item!r} is not a package name (or a glob of one)")
        return value


class ServiceCheck(_Model):
    type: Literal["service"]
    name: Annotated[str, Field(pattern=_UNIT.pattern)]
    enabled: bool | None = None
    active: bool | None = None
    process: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,15}$")] | None = None
    missing_ok: bool = False

    @model_validator(mode="after")
    def _something(self) -> ServiceCheck:
        if self.enabled is None and self.active is None:
            raise ValueError("service needs enabled and/or active")
        return self


class PortsCheck(_Model):
    type: Literal["ports"]
    allowed: list[Annotated[int, Field(ge=1, le=65535)]] = []
    protocols: list[Literal["tcp", "udp"]] = ["tcp"]
    include_loopback: bool = False


class AccountsCheck(_Model):
    type: Literal["accounts"]
    rule: Literal["uid0_only_root", "root_gid", "shadowed_passwords", "no_empty_passwords", "unique_uids",
                  "unique_gids", "unique_names", "unique_group_names", "system_shells", "password_max_days",
                  "password_min_days", "password_warn_days"]
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None
    exempt: list[Annotated[str, Field(pattern=_ACCOUNT.pattern)]] = []
    uid_min: Annotated[int, Field(ge=1)] | None = None
    allowed_shells: list[str] | None = None

    @model_validator(mode="after")
    def _limits(self) -> AccountsCheck:
        if self.rule == "password_max_days" and self.max is None:
            raise ValueError("password_max_days needs max")
        if self.rule in ("password_min_days", "password_warn_days") and self.min is None:
            raise ValueError(f"{self.rule} needs min")
        return self


class CommandCheck(_Model):
    type: Literal["command"]
    argv: Annotated[list[str], Field(min_length=1)]
    rc: list[int] = [0]
    stdout_regex: str | None = None
    stdout_not_regex: str | None = None
    stderr: bool = False

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value[0].startswith("/") and not re.match(r"^[A-Za-z0-9_.\-]+$", value[0]):
            raise ValueError(f"argv[0] {value[0]!r} must be a program name or an absolute path")
        if any("\0" in a for a in value):
            raise ValueError("argv items must not contain NUL")
        return value

    @field_validator("stdout_regex", "stdout_not_regex")
    @classmethod
    def _re(cls, value: str | None) -> str | None:
        return _regex(value)


Check = Annotated[FileCheck | FileModeCheck | FileContentCheck | ConfigValueCheck | SshdCheck | SysctlCheck
                  | KernelModuleCheck | MountCheck | PackageCheck | ServiceCheck | PortsCheck | AccountsCheck
                  | CommandCheck, Field(discriminator="type")]
CHECK_TYPES = ("file", "file_mode", "file_content", "config_value", "sshd", "sysctl", "kernel_module", "mount",
               "package", "service", "ports", "accounts", "command")


class Remediation(_Model):
    """What `remediate_baseline` does for a failing rule (see docs/baselines.md)."""

    type: Literal["file_mode", "config_value", "sshd_option", "sysctl", "kernel_module", "package_absent",
                  "service_disabled", "file_absent", "line"]
    path: str | None = None
    key: str | None = None
    value: str | int | None = None
    separator: Literal[" ", "="] = " "
    line: str | None = None
    regex: str | None = None
    name: str | None = None

    @field_validator("path")
    @classmethod
    def _p(cls, value: str | None) -> str | None:
        return None if value is None else _abs_path(value)

    @field_validator("regex")
    @classmethod
    def _re(cls, value: str | None) -> str | None:
        return _regex(value)

    @model_validator(mode="after")
    def _needs(self) -> Remediation:
        needs = {"config_value": ("path", "key", "value"), "sshd_option": ("key", "value"), "sysctl": ("key", "value"),
                 "kernel_module": ("name",), "package_absent": ("name",), "service_disabled": ("name",),
                 "file_absent": ("path",), "line": ("path", "line"), "file_mode": ()}[self.type]
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"remediation {self.type} needs {', '.join(missing)}")
        if self.type == "package_absent" and not _PACKAGE.match(str(self.name)):
            raise ValueError(f"{self.name!r} is not a package name")
        if self.type == "service_disabled" and not _UNIT.match(str(self.name)):
            raise ValueError(f"{self.name!r} is not a unit name")
        if self.type == "kernel_module" and not _MODULE.match(str(self.name)):
            raise ValueError(f"{self.name!r} is not a kernel module name")
        if self.type == "sysctl" and not _SYSCTL.match(str(self.key)):
            raise ValueError(f"{self.key!r} is not a sysctl key")
        if self.type in ("sshd_option", "config_value") and not re.match(r"^[A-Za-z0-9_.\-]+$", str(self.key)):
            raise ValueError(f"{self.key!r} is not a configuration key")
        for text in (self.value, self.line):
            if isinstance(text, str) and ("\n" in text or "\0" in text):
                raise ValueError("values and lines must be one line")
        return self


class References(_Model):
    cis: str | None = None  # CIS Debian Linux benchmark section
    ccs: str | None = None  # ComplianceAsCode rule id
    nist: list[Annotated[str, Field(pattern=r"^[A-Z]{2}-\d+(\(\d+\))?$")]] = []

    @model_validator(mode="after")
    def _some(self) -> References:
        if self.cis is None and self.ccs is None and not self.nist:
            raise ValueError("a rule needs at least one reference (cis, ccs or nist)")
        return self


class Applies(_Model):
    distributions: list[str] = []
    versions: list[str] = []
    device_types: list[str] = []


class Rule(_Model):
    id: Annotated[str, Field(pattern=RULE_ID)]
    title: Annotated[str, Field(min_length=3)]
    severity: Literal["critical", "high", "medium", "low", "info"]
    criticality: Literal["critical", "normal"] = "normal"
    rationale: Annotated[str, Field(min_length=3)]
    references: References
    applies: Applies = Applies()
    check: Check
    remediation: Remediation | None = None
    timeout: Annotated[int, Field(ge=1, le=600)] | None = None


class RuleFile(_Model):
    version: Literal[1] = 1
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    parameters: dict[str, Any] = {}
    rules: list[dict[str, Any]] = []  # validated one by one after parameters are filled in


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


class Scope(_Model):
    hosts: list[str] = []
    groups: list[str] = []

    @model_validator(mode="after")
    def _some(self) -> Scope:
        if not self.hosts and not self.groups:
            raise ValueError("an exception's scope names hosts and/or groups")
        return self


class Exception_(_Model):
    id: Annotated[str, Field(pattern=RULE_ID)]
    rule: Annotated[str, Field(pattern=RULE_ID)]
    scope: Scope
    owner: Annotated[str, Field(min_length=1)]
    justification: Annotated[str, Field(min_length=3)]
    compensating_control: Annotated[str, Field(min_length=3)]
    expires: str

    @field_validator("expires")
    @classmethod
    def _date(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"expires {value!r} is not a date YYYY-MM-DD") from exc
        return value


class ExceptionsFile(_Model):
    version: Literal[1] = 1
    exceptions: list[Exception_] = []

    @model_validator(mode="after")
    def _unique(self) -> ExceptionsFile:
        yamlsrc.require_unique([e.id for e in self.exceptions], "exception ids")
        return self


# --- loading --------------------------------------------------------------------------------

class _Located:
    """A value and where it came from."""

    def __init__(self, value: Any, path: Path, data: Any, loc: tuple[str | int, ...]) -> None:
        self.value, self.path, self.data, self.loc = value, path, data, loc

    @property
    def where(self) -> str:
        return yamlsrc.where(self.path, self.data, self.loc)


class LoadedRule:
    def __init__(self, raw: dict[str, Any], path: Path, data: Any, index: int, source: str) -> None:
        self.raw, self.path, self.data, self.index, self.source = raw, path, data, index, source

    @property
    def id(self) -> str:
        return str(self.raw.get("id", ""))

    def where(self, *loc: str | int) -> str:
        return yamlsrc.where(self.path, self.data, ("rules", self.index, *loc))


def _mapping(path: Path, kind: str) -> Any:
    data = yamlsrc.load(path)
    if data is None:
        data = yamlsrc.Located()
    if not isinstance(data, dict):
        raise BaselineError(f"{path}:1: {kind} is a mapping (key: value), not {type(data).__name__}")
    return data


def _fill(value: Any, params: dict[str, _Located], used: set[str]) -> Any:
    if isinstance(value, str):
        match = _PARAM.match(value)
        if match:
            if match.group(1) not in params:
                raise KeyError(match.group(1))
            used.add(match.group(1))
            return params[match.group(1)].value
        return value
    if isinstance(value, dict):
        return {k: _fill(v, params, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params, used) for v in value]
    return value


def _rule(loaded: LoadedRule, params: dict[str, _Located]) -> Rule:
    """Validate one rule with parameters filled in; errors name the rule's line, and the
    parameter's own line when the value came from a parameter."""
    used: set[str] = set()
    try:
        filled = _fill(yamlsrc.plain(loaded.raw), params, used)
    except KeyError as exc:
        raise BaselineError(f"{loaded.where()}: rule {loaded.id or loaded.index}: unknown parameter ${exc.args[0]} "
                            f"(define it under parameters)") from None
    try:
        return Rule.model_validate(filled)
    except ValidationError as exc:
        lines = []
        for problem in exc.errors():
            loc = tuple(p for p in problem["loc"] if not (isinstance(p, str) and p.startswith(
                ("function-", "int", "str", "list[", "dict["))))
            if len(loc) > 1 and loc[0] == "check" and loc[1] in CHECK_TYPES:
                loc = (loc[0], *loc[2:])  # the union's tag is not a key in the file
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "extra_forbidden":
                message = f"unknown key (check the spelling; see {DOCS})"
            if problem["type"] == "union_tag_invalid":
                message = f"unknown check type; use one of {', '.join(CHECK_TYPES)}"
            via = "".join(f" (value of ${p}, set at {params[p].where})" for p in sorted(used) if p in params)
            lines.append(f"{loaded.where(*loc)}: rule {loaded.id or loaded.index}: "
                         f"{yamlsrc.loc_text(loc) or 'rule'}: {message}{via}")
        raise BaselineError("\n".join(dict.fromkeys(lines))) from exc


def load_rule_file(path: Path) -> tuple[RuleFile, list[LoadedRule], dict[str, _Located]]:
    data = _mapping(path, "a rule file")
    rule_file = yamlsrc.validate(RuleFile, data, path, "rule file", DOCS, BaselineError)
    rules_data = data.get("rules") or []
    loaded = [LoadedRule(r, path, data, i, rule_file.name) for i, r in enumerate(rules_data)]
    params = {k: _Located(v, path, data, ("parameters", k)) for k, v in rule_file.parameters.items()}
    seen: dict[str, LoadedRule] = {}
    for rule in loaded:
        if not isinstance(rule.raw, dict):
            raise BaselineError(f"{rule.where()}: rules[{rule.index}]: a rule is a mapping")
        _rule(rule, params)  # each rule valid with the file's own defaults
        if rule.id in seen:
            raise BaselineError(f"{rule.where('id')}: rule id {rule.id} is already used at {seen[rule.id].where('id')}")
        seen[rule.id] = rule
    return rule_file, loaded, params


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


def load_exceptions(path: Path) -> list[Exception_]:
    """The exceptions register alone (reports read it without a baseline)."""
    data = _mapping(path, "an exceptions register")
    return list(yamlsrc.validate(ExceptionsFile, data, path, "exceptions", DOCS, BaselineError).exceptions)


class Baseline:
    """A profile with its rule files and the exceptions register, loaded and validated."""

    def __init__(self, profile_path: Path, exceptions_path: Path | None = None) -> None:
        self.path = profile_path
        data = _mapping(profile_path, "a baseline (profile or rule file)")
        if "rules" in data and "include" not in data:
            # a rule file used directly as the whole baseline
            data = yamlsrc.Located({"version": 1, "name": data.get("name", profile_path.stem),
                                    "include": [profile_path.name]})
            data.line, data.key_lines = 1, {"include": 1}
        self.data = data
        self.profile = yamlsrc.validate(Profile, data, profile_path, "profile", DOCS, BaselineError)
        self.files: dict[str, tuple[RuleFile, list[LoadedRule], dict[str, _Located]]] = {}
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
            edata = _mapping(exceptions_path, "an exceptions register")
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
        params: dict[str, _Located] = {}
        disabled: dict[str, dict[str, str]] = {}
        for label, layer, loc in stack:
            for name in layer.include:
                _file, included, defaults = self.files[name]
                for key, value in defaults.items():
                    params.setdefault(key, value)
                for rule in included:
                    chosen[rule.id] = rule
            for key, value in layer.parameters.items():
                params[key] = _Located(value, self.path, self.data, (*loc, "parameters", key))
            for rule_id, reason in layer.disable.items():
                disabled[rule_id] = {"id": rule_id, "layer": label, "reason": reason}
        rules = [_rule(r, params) for rid, r in chosen.items() if rid not in disabled]
        exceptions: dict[str, Exception_] = {}
        for item, _where in self.exceptions:
            if any(fnmatchcase(host.name, p) for p in item.scope.hosts) or set(item.scope.groups) & set(host.groups):
                current = exceptions.get(item.rule)
                if current is None or item.expires > current.expires:
                    exceptions[item.rule] = item
        return Compiled(host.name, rules, sorted(disabled.values(), key=lambda d: d["id"]), exceptions)

    def rules_by_id(self) -> dict[str, Rule]:
        """Every rule with the rule files' own defaults (for reports: titles, severities)."""
        return {r.id: _rule(r, params) for _f, rules, params in self.files.values() for r in rules}
