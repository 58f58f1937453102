"""Baseline rule files: rules with their checks and remediations, and default parameters — YAML,
validated before anything runs, every error `file:line: where: what to fix`.

A *rule file* holds rules (id, title, severity, references, applicability, one check, an
optional remediation) and default parameters. A *profile* stacks layers for a host:
organisation standard → device type → group → host; each layer may include rule files (a rule
with an id already present replaces it), override parameters and disable rules with a reason.
Compiling a profile for a host gives the flat rule list the `assess_baseline` module evaluates,
with every `$parameter` filled in and the host's exception attached to its rule.
"""

from __future__ import annotations

import posixpath
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.errors import InputError

DOCS = "docs/baselines.md"
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$"
_PARAM = re.compile(r"^\$([a-z][a-z0-9_]*)$")
_PACKAGE = re.compile(r"^[a-z0-9*?][a-z0-9+.*?\-]*$")
_UNIT = yamlsrc.UNIT_NAME
_SYSCTL = re.compile(r"^[a-z0-9_]+([./][a-zA-Z0-9_\-]+)+$")
_MODULE = re.compile(r"^[a-z0-9_\-]+$")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_.\-]*\$?$")
# C0 and C1 controls, DEL and U+2028/2029: str.splitlines() breaks a line at each of them, so a
# value holding one would become two lines of a configuration file on the host
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# What remediate_baseline refuses on the host (fixes.PathGuard, fixes.sshd_option_problem),
# refused here already for what a baseline file can say; the host judges again with the real
# home directories, symlinks resolved and the connection user known.
_KEY_FILE_NAMES = ("authorized_keys", "authorized_principals")
_SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-patchwave.conf"
_ACCOUNT_FILES = frozenset({"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/nologin",
                            "/run/nologin", "/var/run/nologin"})
_SSHD_CONNECTION_KEYS = frozenset({
    "port", "listenaddress", "addressfamily", "authenticationmethods", "authorizedkeysfile", "authorizedkeyscommand",
    "authorizedkeyscommanduser", "authorizedprincipalsfile", "authorizedprincipalscommand",
    "authorizedprincipalscommanduser", "revokedkeys", "trustedusercakeys", "chrootdirectory", "forcecommand",
    "subsystem"})
_ROOT_LOGIN_ALLOWED = ("no", "prohibit-password", "without-password")
_SUDO_FLAGS_REFUSED = frozenset({"requiretty", "rootpw", "targetpw", "runaspw", "noexec", "intercept"})
_PROTECTED_PACKAGES = frozenset({"openssh-server", "openssh-sftp-server", "sudo", "python3", "python3-minimal", "dpkg",
                                 "apt", "libc6", "systemd", "bash", "login", "passwd", "libpam-modules"})
_PROTECTED_UNITS = frozenset({"ssh.service", "sshd.service", "ssh.socket", "systemd-journald.service"})
# What the connection runs on (fixes.CONNECTION_FILES): never written or removed. An entry
# ending in `*` is every entry of that directory (at any depth) whose name starts so; /bin,
# /sbin and /lib count as their /usr twins (merged /usr).
_CONNECTION_FILES = (
    ("/usr/sbin/sshd", "sshd"),
    ("/usr/lib/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/libexec/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/bin/sudo", "sudo (the connection's become)"),
    ("/usr/lib/sudo", "sudo's plugins"),
    ("/usr/libexec/sudo", "sudo's plugins"),
    ("/etc/sudo.conf", "sudo's plugin configuration"),
    ("/usr/lib/systemd/system/ssh*", "sshd's systemd unit"),
    ("/etc/systemd/system/ssh*", "sshd's systemd unit"),
    ("/usr/bin/python3*", "the python3 Ansible runs"),
    ("/usr/lib/python3*", "python3's standard library (Ansible runs on it)"),
    ("/usr/bin/sh", "the shell Ansible runs its commands with"),
    ("/usr/bin/dash", "the shell Ansible runs its commands with"),
    ("/usr/bin/bash", "a login shell"),
    ("/etc/pam.conf", "PAM's configuration (sshd and sudo authenticate through it)"),
    ("/etc/pam.d", "PAM's configuration (sshd and sudo authenticate through it)"),
    ("/etc/nsswitch.conf", "the name service configuration (how sshd and sudo find users)"),
    ("/etc/security/access.conf", "pam_access's table of who may log in from where"),
    ("/etc/security/limits.conf", "pam_limits' configuration (a limit can stop every session)"),
    ("/etc/security/limits.d", "pam_limits' configuration (a limit can stop every session)"),
    ("/etc/security/time.conf", "pam_time's table of who may log in when"),
)
_REMOVE_REFUSED = (("/etc/security", "the configuration of PAM's modules"), ("/etc/shells", "the list of login shells"))
_LIMITS_DIR = "/etc/security/limits.d"
_CORE_LIMIT = re.compile(r"^\s*(#.*|[^\s#]+\s+(soft|hard|-)\s+core\s+[^\s#]+\s*(#.*)?)?\Z")
# no chmod or chown: they would leave every user unable to reach a file or run a program
# (named, not used: S108 is about creating temporary files)
_SYSTEM_DIRS = frozenset({"/", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/usr", "/usr/bin", "/usr/sbin", "/usr/lib",
                          "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/var",
                          "/var/lib", "/run", "/tmp", "/var/tmp", "/dev"})  # noqa: S108 - paths refused, not temp files made
_MODE_REFUSED = (
    ("/usr/sbin/sshd", "sshd"),
    ("/usr/lib/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/libexec/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/bin/sudo", "sudo (the connection's become; it needs its setuid bit)"),
    ("/usr/lib/sudo", "sudo's plugins"),
    ("/usr/libexec/sudo", "sudo's plugins"),
    ("/usr/bin/python3*", "the python3 Ansible runs"),
    ("/usr/lib/python3*", "python3's standard library (Ansible runs on it)"),
    ("/usr/bin/sh", "the shell Ansible runs its commands with"),
    ("/usr/bin/dash", "the shell Ansible runs its commands with"),
    ("/usr/bin/bash", "a login shell"),
)
_GLOB = re.compile(r"[*?\[]")


class BaselineError(InputError):
    pass


class Model(BaseModel):
    model_config = yamlsrc.STRICT


def _abs_path(value: str) -> str:
    if not value.startswith("/") or _CONTROL.search(value):
        raise ValueError(f"{value!r} is not an absolute path")
    if posixpath.normpath(value) != value or value.startswith("//"):
        raise ValueError(f"{value!r} is not a normalised absolute path (no '..', '.', '//' or trailing '/'); "
                         f"write {posixpath.normpath(value)!r}")
    return value


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


class _Compare(Model):
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


class FileCheck(Model):
    type: Literal["file"]
    path: str
    state: Literal["present", "absent"] = "present"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _abs_path(value)


class FileModeCheck(Model):
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


class FileContentCheck(Model):
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


class SysctlCheck(Model):
    type: Literal["sysctl"]
    key: Annotated[str, Field(pattern=_SYSCTL.pattern)]
    value: str | int
    scope: Literal["runtime", "persisted", "both"] = "both"


class KernelModuleCheck(Model):
    type: Literal["kernel_module"]
    name: Annotated[str, Field(pattern=_MODULE.pattern)]
    blacklist_enough: bool = False


class MountCheck(Model):
    type: Literal["mount"]
    mount: str
    options: list[Annotated[str, Field(pattern=r"^[a-z0-9_=]+$")]] = []
    require_mount: bool = False

    @field_validator("mount")
    @classmethod
    def _path(cls, value: str) -> str:
        return _abs_path(value)


class PackageCheck(Model):
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


class ServiceCheck(Model):
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


class PortsCheck(Model):
    type: Literal["ports"]
    allowed: list[Annotated[int, Field(ge=1, le=65535)]] = []
    protocols: list[Literal["tcp", "udp"]] = ["tcp"]
    include_loopback: bool = False


class AccountsCheck(Model):
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


class CommandCheck(Model):
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


class Remediation(Model):
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
        if self.type == "package_absent" and (not _PACKAGE.fullmatch(str(self.name)) or set("*?") & set(str(self.name))):
            raise ValueError(f"{self.name!r} is not a package name (globs are for checks, not for removals)")
        if self.type == "service_disabled" and not _UNIT.fullmatch(str(self.name)):
            raise ValueError(f"{self.name!r} is not a unit name")
        if self.type == "kernel_module" and not _MODULE.fullmatch(str(self.name)):
            raise ValueError(f"{self.name!r} is not a kernel module name")
        if self.type == "sysctl" and not _SYSCTL.fullmatch(str(self.key)):
            raise ValueError(f"{self.key!r} is not a sysctl key")
        if self.type == "config_value" and not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(self.key)):
            raise ValueError(f"{self.key!r} is not a configuration key")
        if self.type == "sshd_option" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9]+", str(self.key)):
            raise ValueError(f"{self.key!r} is not an sshd keyword")
        for text in (self.value, self.line):
            if isinstance(text, str) and ("\n" in text or "\0" in text):
                raise ValueError("values and lines must be one line")
        return self


class References(Model):
    cis: str | None = None  # CIS Debian Linux benchmark section
    ccs: str | None = None  # ComplianceAsCode rule id
    nist: list[Annotated[str, Field(pattern=r"^[A-Z]{2}-\d+(\(\d+\))?$")]] = []

    @model_validator(mode="after")
    def _some(self) -> References:
        if self.cis is None and self.ccs is None and not self.nist:
            raise ValueError("a rule needs at least one reference (cis, ccs or nist)")
        return self


class Applies(Model):
    distributions: list[str] = []
    versions: list[str] = []
    device_types: list[str] = []


class Rule(Model):
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


class RuleFile(Model):
    version: Literal[1] = 1
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    parameters: dict[str, Any] = {}
    rules: list[dict[str, Any]] = []  # validated one by one after parameters are filled in


# --- loading --------------------------------------------------------------------------------

class Sourced:
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


def read_mapping(path: Path, kind: str) -> Any:
    """The file's top mapping; an empty file is an error, never "no rules" or "no exceptions"
    (write `exceptions: []` for an empty register)."""
    return yamlsrc.load_mapping(path, kind, DOCS, BaselineError)


def _fill(value: Any, params: dict[str, Sourced], used: set[str]) -> Any:
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


def _control_at(value: Any, loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str] | None:
    """Where the first string holding a control character is, and the character."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _control_at(key, (*loc, key)) or _control_at(item, (*loc, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _control_at(item, (*loc, index))
            if found:
                return found
    elif isinstance(value, str):
        match = _CONTROL.search(value)
        if match:
            return loc, match.group()
    return None


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _below(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def _usr_twins(path: str) -> list[str]:
    """`path` and its merged-/usr twin (/bin/sh is /usr/bin/sh)."""
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if _under(path, top):
            return [path, "/usr" + path]
        if _under(path, "/usr" + top):
            return [path, path.removeprefix("/usr")]
    return [path]


def _listed(path: str, entries: tuple[tuple[str, str], ...]) -> str:
    """What `path` (a path, or the literal start of a glob) is when it is one of `entries` or
    inside one, else ''."""
    for candidate in _usr_twins(path):
        for entry, what in entries:
            if entry.endswith("*"):
                directory, prefix = entry[:-1].rsplit("/", 1)
                if _below(candidate, directory) and any(
                        p.startswith(prefix) for p in candidate[len(directory) + 1:].split("/")):
                    return what
            elif _under(candidate, entry):
                return what
    return ""


def _glob_matches(path: str, pattern: str) -> bool:
    """`pattern` matches `path` as the host's glob.glob would: name by name, `*` never
    crossing a `/`."""
    names, parts = path.split("/"), pattern.split("/")
    return len(names) == len(parts) and all(fnmatchcase(n, p) for n, p in zip(names, parts, strict=True))


def _glob_listed(pattern: str, entries: tuple[tuple[str, str], ...]) -> str:
    """What a file_mode glob may reach of `entries`: its literal start is inside one, or it
    matches one (or something inside one)."""
    if not _GLOB.search(pattern):
        return _listed(pattern, entries)
    what = _listed(_GLOB.split(pattern, maxsplit=1)[0].rstrip("/") or "/", entries)
    if what:
        return what
    for twin in _usr_twins(pattern):
        for entry, label in entries:
            base = entry.rstrip("*")
            if any(_glob_matches(sample, twin) for sample in (base, base + ".x", base + "/x", base + ".x/x")):
                return label
    return ""


def _may_be_home(pattern: str) -> bool:
    """A path or glob that can name a home directory wherever homes usually are (the host
    judges again with every home of /etc/passwd)."""
    parts = pattern.split("/")
    return _glob_matches("/root", pattern) or (len(parts) == 3 and fnmatchcase("home", parts[1]) and parts[2] != "")


def _mode_problem(pattern: str, check: FileModeCheck) -> str:
    """Why a file_mode fix of `pattern` could shut users out, or '': the binaries the
    connection runs, the system directories, the directories above a home, and a home's owner
    (its owner's rwx, who owns it)."""
    twins = _usr_twins(pattern)
    literal = _GLOB.split(pattern, maxsplit=1)[0]
    if any(_glob_matches(d, t) for d in (*sorted(_SYSTEM_DIRS), "/home", "/dev/null") for t in twins) or \
            _under(literal.rstrip("/"), "/dev"):
        return ("a system directory, /dev or a directory above the home directories; a chmod or chown there would "
                "lock out every user, the connection user included (sshd reads ~/.ssh as the user, with StrictModes)")
    what = _glob_listed(pattern, _MODE_REFUSED)
    if what:
        return f"reaches {what}; Patchwave never changes its mode or owner, which would lock out the connection user"
    if _may_be_home(pattern):
        if check.owner is not None or check.group is not None:
            return ("a home directory; sshd reads ~/.ssh there only while it stays its user's (StrictModes), and a "
                    "chown would lock its user out, so Patchwave does not do it")
        if check.mode is not None and int(check.mode, 8) & 0o700 != 0o700:
            return (f"a home directory; mode {check.mode} takes its owner's read, write or search bit and would lock "
                    "its user out (sshd reads ~/.ssh as the user)")
    return ""


def _protected_path(path: str, kind: str, line: str | None = None) -> str:  # noqa: PLR0911, PLR0912 - one refusal per kind of protected path, in the order the host checks them
    """Why remediation `kind` (line, config_value, file_absent, file_mode) may not touch
    `path` (a path or a glob), or ''; `line` is what a line remediation writes. Text only: the
    host judges again with symlinks resolved, and asks dpkg -S who owns a file it removes."""
    parts = path.split("/")
    if any(p.startswith(".") and fnmatchcase(".ssh", p) for p in parts):
        return "a user's ~/.ssh: Patchwave never changes SSH keys or their directory"
    if any(p.startswith(_KEY_FILE_NAMES) or (p[:1] not in "*?[" and fnmatchcase("authorized_keys", p)) for p in parts):
        return "authorized keys: Patchwave never changes them"
    if kind == "file_mode":
        return ""
    if _under(path, "/etc/ssh"):
        return ("sshd reads /etc/ssh; its configuration changes only through an sshd_option remediation "
                "(a drop-in checked with sshd -t first)")
    if path == "/etc/sudoers":
        return "Patchwave never edits or removes /etc/sudoers; use a line remediation in /etc/sudoers.d"
    if _under(path, "/etc/sudoers.d") and (kind != "line" or path == "/etc/sudoers.d"):
        return "a file in /etc/sudoers.d changes only through a line remediation (checked with visudo -c)"
    if path in _ACCOUNT_FILES:
        return f"{path} decides who can log in; Patchwave does not edit or remove it"
    what = _listed(path, _CONNECTION_FILES)
    if what:
        if kind == "line" and _below(path, _LIMITS_DIR) and line is not None and _CORE_LIMIT.match(line):
            return ""  # a core limit cannot stop a session
        if kind == "file_absent":
            return f"{path} is {what}; removing it would lock out the connection user, so Patchwave does not do it"
        reason = f"{path} is {what}; changing it could lock out the connection user, so Patchwave reports the rule and "
        if _under(path, _LIMITS_DIR):
            return reason + "a person fixes it (a line remediation may add core limits here, nothing else)"
        if _under(path, "/etc/pam.d") or _under(path, "/etc/security") or path == "/etc/pam.conf":
            return reason + "a person fixes it (PAM hardening is out of scope for automatic remediation)"
        return reason + "a person fixes it"
    what = _listed(path, _REMOVE_REFUSED) if kind == "file_absent" else ""
    if what:
        return f"{path} is {what}; removing it could lock out the connection user, so Patchwave does not do it"
    return ""


def _root_only(path: str) -> bool:
    return _under(path, "/etc/ssh") or _under(path, "/etc/sudoers") or _under(path, "/etc/sudoers.d") \
        or path in _ACCOUNT_FILES


def _sudoers_line_problem(line: str) -> str:
    """Only plain Defaults lines that keep a non-interactive sudo (Ansible's become) working."""
    words = line.split(None, 1)
    if not words or words[0] != "Defaults":
        return ("Patchwave writes only plain Defaults lines to sudoers drop-ins; who may run what is not a "
                "baseline's to change")
    flags = {re.split(r"[+\-]?=", f, maxsplit=1)[0] for f in re.split(r"[\s,]+", words[1] if len(words) > 1 else "")}
    bad = sorted(flags & _SUDO_FLAGS_REFUSED)
    if bad:
        return f"Defaults {', '.join(bad)} would break the connection's non-interactive sudo"
    return ""


def _sshd_seconds(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    parts = re.findall(r"([0-9]+)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * scale[u] for n, u in parts)


def _sshd_option_problem(key: str, value: str) -> tuple[str, str]:
    """(the remediation field at fault, why) for what the host refuses whoever connects (the
    host also checks the connection user), or ('', '')."""
    key, text = key.lower(), value.strip()
    if key in ("match", "include"):
        return "key", f"{key} opens a block or reads other files; an sshd_option sets one keyword"
    if key in _SSHD_CONNECTION_KEYS:
        return "key", f"{key} decides how the connection itself works; Patchwave does not change it"
    reason = _sshd_value_problem(key, text)
    return ("value", reason) if reason else ("", "")


def _sshd_value_problem(key: str, text: str) -> str:  # noqa: PLR0911 - one answer per sshd keyword
    lowered = text.lower()
    if key == "permitrootlogin":
        if lowered == "yes":
            return "PermitRootLogin yes lets root log in with a password; use no or prohibit-password"
        if lowered == "forced-commands-only":
            return ("PermitRootLogin forced-commands-only lets root in only with keys that carry a command= "
                    "option, which Patchwave cannot check; use no or prohibit-password")
        if lowered not in _ROOT_LOGIN_ALLOWED:
            return f"PermitRootLogin {text}: use no or prohibit-password"
    if key == "pubkeyauthentication" and lowered != "yes":
        return f"PubkeyAuthentication {text} would lock out the connection user, who logs in with a key"
    if key == "maxsessions" and (not text.isdigit() or int(text) < 2):
        return f"MaxSessions {text} leaves no session for Ansible's multiplexed connection"
    if key == "maxauthtries" and (not text.isdigit() or int(text) < 2):
        return f"MaxAuthTries {text} leaves the connection user a single try"
    if key == "logingracetime":
        seconds = _sshd_seconds(lowered)
        if seconds is None or 0 < seconds < 10:
            return f"LoginGraceTime {text} leaves too little time to log in (0 or at least 10 seconds)"
    return ""


def _remediation_problems(rule: Rule) -> list[tuple[tuple[str | int, ...], str]]:  # noqa: PLR0912 - one check per remediation type
    """(where in the rule, what is wrong) for every remediation the host would refuse."""
    fix = rule.remediation
    if fix is None:
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if fix.type in ("line", "config_value", "file_absent") and fix.path is not None:
        reason = _protected_path(fix.path, fix.type, fix.line)
        if reason:
            problems.append((("remediation", "path"), f"{fix.path}: {reason}"))
        elif fix.type == "line" and fix.line is not None and fix.path.startswith("/etc/sudoers.d/"):
            reason = _sudoers_line_problem(fix.line)
            if reason:
                problems.append((("remediation", "line"), reason))
    if fix.type == "file_mode":
        check = rule.check
        if not isinstance(check, FileModeCheck):
            problems.append((("remediation", "type"), "a file_mode remediation takes its paths, owner, group and mode "
                                                      f"from a file_mode check, not a {check.type} check"))
        else:
            for index, pattern in enumerate(check.paths):
                reason = _protected_path(pattern, "file_mode") or _mode_problem(pattern, check)
                if reason:
                    problems.append((("check", "paths", index), f"{pattern}: {reason}"))
                elif check.owner not in (None, "root") and _root_only(pattern):
                    problems.append((("check", "owner"), f"{pattern} must stay root's (sshd and sudo check who owns "
                                                         f"their files); not chown to {check.owner}"))
    if fix.type == "sshd_option" and fix.key is not None and fix.value is not None:
        field, reason = _sshd_option_problem(fix.key, str(fix.value))
        if reason:
            problems.append((("remediation", field), reason))
    if fix.type == "package_absent" and fix.name in _PROTECTED_PACKAGES:
        problems.append((("remediation", "name"), f"{fix.name} carries the connection; Patchwave does not remove it"))
    if fix.type == "service_disabled" and fix.name is not None:
        unit = fix.name if "." in fix.name else f"{fix.name}.service"
        if unit in _PROTECTED_UNITS:
            problems.append((("remediation", "name"), f"{unit} carries the connection; Patchwave does not disable it"))
    return problems


def build_rule(loaded: LoadedRule, params: dict[str, Sourced]) -> Rule:
    """Validate one rule with parameters filled in; errors name the rule's line, and the
    parameter's own line when the value came from a parameter."""
    used: set[str] = set()
    try:
        filled = _fill(yamlsrc.plain(loaded.raw), params, used)
    except KeyError as exc:
        raise BaselineError(f"{loaded.where()}: rule {loaded.id or loaded.index}: unknown parameter ${exc.args[0]} "
                            f"(define it under parameters)") from None
    via = "".join(f" (value of ${p}, set at {params[p].where})" for p in sorted(used) if p in params)
    # what reaches the host (the title and rationale may well span lines)
    control = _control_at({k: v for k, v in filled.items() if k in ("id", "applies", "check", "remediation")}, ()) \
        if isinstance(filled, dict) else None
    if control is not None:
        loc, char = control
        raise BaselineError(f"{loaded.where(*loc)}: rule {loaded.id or loaded.index}: {yamlsrc.loc_text(loc)}: holds a "
                            f"control character (U+{ord(char):04X}); values and paths are one line of printable "
                            f"text{via}")
    try:
        rule = Rule.model_validate(filled)
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
            lines.append(f"{loaded.where(*loc)}: rule {loaded.id or loaded.index}: "
                         f"{yamlsrc.loc_text(loc) or 'rule'}: {message}{via}")
        raise BaselineError("\n".join(dict.fromkeys(lines))) from exc
    problems = _remediation_problems(rule)
    if problems:
        raise BaselineError("\n".join(f"{loaded.where(*loc)}: rule {rule.id}: {yamlsrc.loc_text(loc)}: {message}{via}"
                                      for loc, message in problems))
    return rule


def load_rule_file(path: Path) -> tuple[RuleFile, list[LoadedRule], dict[str, Sourced]]:
    data = read_mapping(path, "rule")
    rule_file = yamlsrc.validate(RuleFile, data, path, "rule file", DOCS, BaselineError)
    rules_data = data.get("rules") or []
    loaded = [LoadedRule(r, path, data, i, rule_file.name) for i, r in enumerate(rules_data)]
    params = {k: Sourced(v, path, data, ("parameters", k)) for k, v in rule_file.parameters.items()}
    seen: dict[str, LoadedRule] = {}
    for rule in loaded:
        if not isinstance(rule.raw, dict):
            raise BaselineError(f"{rule.where()}: rules[{rule.index}]: a rule is a mapping")
        build_rule(rule, params)  # each rule valid with the file's own defaults
        if rule.id in seen:
            raise BaselineError(f"{rule.where('id')}: rule id {rule.id} is already used at {seen[rule.id].where('id')}")
        seen[rule.id] = rule
    return rule_file, loaded, params


FAILING = ("fail", "error")
