"""Patch policies: YAML validated before anything runs; every error is `file:line: what to fix`.

A policy says which hosts a cycle targets, which updates it approves, in which waves it rolls
them out, what gates a wave must pass, and when it may run (maintenance windows). The schema is
pydantic (unknown keys and wrong types are errors); the checks pydantic cannot express (time
zones, overlapping slots, percentages, waves that can never get a host, unknown groups) follow,
each naming the line it is about.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.errors import InputError

SEVERITY = Literal["critical", "high", "medium", "low", "unknown"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(?::[a-z0-9\-]+)?(?:=(?:[0-9]+:)?[0-9A-Za-z][0-9A-Za-z.+~\-]*)?$")
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]!:+\-]+$")
_SERVICE = yamlsrc.UNIT_NAME
_LINE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")  # one line of printable text (a name)
MAX_DAYS = 3650  # SLAs and delays: ten years is the most that means anything (and stays a date)
WEEK_MINUTES = 7 * 24 * 60


class PolicyError(InputError):
    pass


class _Model(BaseModel):
    model_config = yamlsrc.STRICT

    @field_validator("*")
    @classmethod
    def _no_templates(cls, value: Any) -> Any:
        """Every text of a policy, wherever it goes (health-check URLs and user notices reach
        Ansible, names reach reports and messages): never Jinja."""
        return yamlsrc.refuse_templates(value)


def _check_amount(value: int | str, what: str) -> int | str:
    """A count (int >= 0) or a percentage string "N%" with 0 <= N <= 100."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a count or a percentage like '10%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative")
        return value
    match = _PERCENT.match(value.strip())
    if not match:
        raise ValueError(f"{what} must be a count or a percentage like '10%', not {value!r}")
    if float(match.group(1)) > 100:
        raise ValueError(f"{what} is a percentage over 100 ({value})")
    return value.strip()


def _check_url(value: str) -> str:
    """A health-check URL: http(s), a host, nothing a command line or a header could split on."""
    from urllib.parse import urlsplit

    if not value.startswith(("http://", "https://")):
        raise ValueError(f"http check {value[:80]!r} must be an http(s):// URL")
    if re.search(r"[\s\x00-\x1f\x7f]", value):
        raise ValueError(f"http check {value[:80]!r}: a URL has no space or control character (encode a space as %20)")
    try:
        host = urlsplit(value).hostname
    except ValueError as exc:
        raise ValueError(f"http check {value[:80]!r} is not a URL: {exc}") from exc
    if not host:
        raise ValueError(f"http check {value[:80]!r} names no host")
    return value


class Selector(_Model):
    groups: list[str] = []
    device_types: list[str] = []
    hosts: list[str] = []  # fnmatch patterns

    @field_validator("hosts")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _PATTERN.match(item):
                raise ValueError(f"host pattern {item!r} has characters a host name cannot have")
        return value


class Targets(Selector):
    exclude: list[str] = []


class AdvisorySource(_Model):
    """A file or directory, or a URL: https:// or file://; plain http:// only with
    `insecure: true`, since what the source serves decides which fixes are approved."""

    path: str | None = None
    url: str | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _one(self) -> AdvisorySource:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' or 'url'")
        if self.url is None:
            if self.insecure:
                raise ValueError("insecure: true is only for an http:// url, not a path: remove insecure")
            return self
        scheme, sep, rest = self.url.partition("://")
        host, slash, path = rest.split("?", 1)[0].split("#", 1)[0].partition("/")
        shown = f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"  # for messages: no user, password or query
        if not sep or scheme not in ("http", "https", "file"):
            raise ValueError(f"url must be https:// or file://, not {shown if sep else 'a value without a scheme'}")
        if "@" in host:
            raise ValueError(f"url {shown!r}: a user or password does not belong in the URL")
        if scheme == "http" and not self.insecure:
            raise ValueError(f"url {shown!r} is plain http, so anyone on the path could change what is approved: "
                             "use https:// (or set insecure: true on this advisory source to accept that)")
        if scheme != "http" and self.insecure:
            raise ValueError(f"insecure: true is only for an http:// url, not {scheme}://: remove insecure")
        return self


class Approval(_Model):
    security: bool = True
    other: bool = False
    min_severity: SEVERITY = "unknown"
    delay_days: Annotated[int, Field(ge=0, le=MAX_DAYS)] = 0
    include: list[str] = ["*"]
    exclude: list[str] = []
    approve: list[str] = []
    reject: list[str] = []
    allow_held: bool = False

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _PATTERN.match(item):
                raise ValueError(f"package pattern {item!r} has characters a package name cannot have")
        return value

    @field_validator("approve", "reject")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _PACKAGE.match(item):
                raise ValueError(f"{item!r} is not a package name or name=version")
        return value


class Slot(_Model):
    days: list[str]
    start: str
    end: str

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a slot needs at least one day")
        for day in value:
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError(f"{value!r} is not a time of day HH:MM (00:00 to 23:59)")
        return value

    @model_validator(mode="after")
    def _order(self) -> Slot:
        if self.end <= self.start:
            raise ValueError(f"slot ends ({self.end}) before it starts ({self.start}); split a slot that spans midnight")
        return self

    def times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class Window(_Model):
    groups: list[str] = []  # empty: every host
    timezone: str = "UTC"
    slots: Annotated[list[Slot], Field(min_length=1)]  # a window without a slot never opens
    blackout: list[str] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return yamlsrc.time_zone(value)

    @field_validator("blackout")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                date.fromisoformat(item)
            except ValueError as exc:
                raise ValueError(f"blackout date {item!r} is not YYYY-MM-DD") from exc
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> Window:
        for day in DAYS:
            spans = sorted(s.times() for s in self.slots if day in s.days)
            for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
                if s2 < e1:
                    raise ValueError(f"slots overlap on {day} ({s2:%H:%M} starts before {e1:%H:%M} ends)")
        return self


class Wave(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
    size: int | str = "100%"
    selector: Selector | None = None
    order_by: Literal["criticality", "name"] = "criticality"
    concurrency: Annotated[int, Field(ge=1)] = 20
    soak_minutes: Annotated[float, Field(ge=0, le=7 * 24 * 60)] = 0  # healthy this long before the next wave
    duration_minutes: Annotated[int, Field(ge=1, le=WEEK_MINUTES)] = 30  # how long the wave needs inside its window
    approval: bool = False
    failure_budget: int | str = 0

    @field_validator("size")
    @classmethod
    def _size(cls, value: int | str) -> int | str:
        checked = _check_amount(value, "size")
        if checked in (0, "0%"):
            raise ValueError("a wave needs a size above 0")
        return checked

    @field_validator("failure_budget")
    @classmethod
    def _budget(cls, value: int | str) -> int | str:
        return _check_amount(value, "failure_budget")


class HealthCheck(_Model):
    service: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    http: str | None = None
    status: Annotated[int, Field(ge=100, le=599)] = 200
    playbook: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HealthCheck:
        kinds = [k for k in ("service", "port", "http", "playbook") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("each health check is exactly one of: service, port, http, playbook")
        if self.service is not None and not _SERVICE.match(self.service):
            raise ValueError(f"service {self.service!r} is not a unit name")
        if self.http is not None:
            _check_url(self.http)
        return self


class Gates(_Model):
    failure_budget: int | str = 0
    health_checks: list[HealthCheck] = []
    rollback_on_failure: bool = True

    @field_validator("failure_budget")
    @classmethod
    def _budget(cls, value: int | str) -> int | str:
        return _check_amount(value, "failure_budget")


REBOOT_WAIT_MINUTES = 15  # the reboot role's reboot_timeout (900 s), silent while it waits


class Timeouts(_Model):
    """How long one ansible-runner invocation may take (job) and may stay silent (idle)."""

    idle_minutes: Annotated[float, Field(gt=0, le=WEEK_MINUTES)] = 20
    job_minutes: Annotated[float, Field(gt=0, le=WEEK_MINUTES)] = 240

    @model_validator(mode="after")
    def _order(self) -> Timeouts:
        if self.job_minutes <= self.idle_minutes:
            raise ValueError(f"job_minutes ({self.job_minutes:g}) must be longer than idle_minutes "
                             f"({self.idle_minutes:g})")
        return self


_NOTICE = re.compile(r"^[^\x00-\x1f\x7f]{1,400}$")  # one line of printable text


class UserNotice(_Model):
    """What logged-in users of a host are told before the install and before a reboot: nothing,
    a message (wall), or a message and then a wait so they can save their work."""

    mode: Literal["none", "message", "delay"] = "message"
    message: str = "Patchwave is installing updates on this host; services may restart."
    reboot_message: str = "Patchwave is rebooting this host to finish installing updates."
    delay_minutes: float = Field(default=5, gt=0, le=120)

    @field_validator("message", "reboot_message")
    @classmethod
    def _text(cls, value: str) -> str:
        if not _NOTICE.match(value):
            raise ValueError("a notice is one line of printable text, at most 400 characters")
        return value

    def extravars(self) -> dict[str, Any]:
        delay = round(self.delay_minutes * 60) if self.mode == "delay" else 0
        wait = f" It starts in {self.delay_minutes:g} minute(s)." if delay else ""
        return {"deploy_notify_users": self.mode != "none", "deploy_notify_message": self.message + wait,
                "deploy_reboot_message": self.reboot_message, "deploy_notify_delay": delay}


_RELAY = re.compile(r"^http://(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?/?$")


class ThinLink(_Model):
    """Hosts behind a slow or metered link: staging downloads no faster than
    `download_limit_kbps` and, when `relay` is set, through that caching apt proxy near them."""

    groups: Annotated[list[str], Field(min_length=1)]
    download_limit_kbps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    relay: str | None = None

    @field_validator("relay")
    @classmethod
    def _relay(cls, value: str | None) -> str | None:
        if value is not None and not _RELAY.match(value):
            raise ValueError(f"relay {value!r} must be an apt proxy URL http://HOST[:PORT]/ (no path, user or "
                             "query; apt-cacher-ng listens on port 3142)")
        return value

    @model_validator(mode="after")
    def _something(self) -> ThinLink:
        if self.download_limit_kbps is None and self.relay is None:
            raise ValueError("a thin link needs download_limit_kbps, relay or both")
        return self

    def describe(self) -> str:
        parts = [f"at most {self.download_limit_kbps} KB/s"] if self.download_limit_kbps else []
        return ", ".join(parts + ([f"through relay {self.relay}"] if self.relay else []))

    def playbook_vars(self) -> dict[str, Any]:
        return {"download_limit_kbps": self.download_limit_kbps or 0, "relay": self.relay or ""}


def thin_link(links: list[ThinLink], groups: tuple[str, ...] | list[str]) -> ThinLink | None:
    """The first thin link naming one of a host's groups (their order in the file decides)."""
    return next((link for link in links if set(link.groups) & set(groups)), None)


def thin_link_vars(links: list[ThinLink], hosts: list[Any]) -> dict[str, dict[str, Any]]:
    """Playbook variables (`patchwave_thin_links`) for the hosts behind a thin link."""
    return {h.name: found.playbook_vars() for h in hosts if (found := thin_link(links, h.groups)) is not None}


class Policy(_Model):
    version: Literal[1] = 1
    name: Annotated[str, Field(min_length=1)] = "default"
    targets: Targets = Targets()
    advisories: list[AdvisorySource] = []
    approval: Approval = Approval()
    sla_days: dict[SEVERITY, Annotated[int, Field(ge=1, le=MAX_DAYS)]] = {"critical": 7, "high": 14, "medium": 30, "low": 90}
    windows: list[Window] = []
    waves: Annotated[list[Wave], Field(min_length=1)] = [Wave(name="canary", size=1), Wave(name="broad")]
    gates: Gates = Gates()
    reboot: Literal["never", "if_required", "always"] = "if_required"
    # processes still running replaced code after an install: report only, restart their services,
    # or reboot the host
    restart: Literal["never", "services", "reboot"] = "services"
    timeouts: Timeouts = Timeouts()
    user_notice: UserNotice = UserNotice()
    thin_links: list[ThinLink] = []

    def thin_link(self, groups: tuple[str, ...] | list[str]) -> ThinLink | None:
        return thin_link(self.thin_links, groups)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not _LINE.match(value):
            raise ValueError("a policy name is one line of printable text, at most 100 characters")
        return value

    @model_validator(mode="after")
    def _waves(self) -> Policy:
        yamlsrc.require_unique([w.name for w in self.waves], "wave names")
        for index, wave in enumerate(self.waves[:-1]):
            if wave.selector is None and wave.size == "100%":
                raise ValueError(f"wave {wave.name!r} takes every remaining host, so wave "
                                 f"{self.waves[index + 1].name!r} can never get one")
        return self


def _where(path: Path, data: Any, loc: tuple[str | int, ...]) -> str:
    return yamlsrc.where(path, data, loc)


def load(path: Path, known_groups: set[str] | None = None) -> Policy:
    """Read and validate a policy file; `known_groups` (from the inventory) checks group names.
    An empty file is an error: the default policy on every host is never an accident."""
    data = yamlsrc.load_mapping(path, "policy", "docs/policies.md", PolicyError)
    policy = yamlsrc.validate(Policy, data, path, "policy", "docs/policies.md", PolicyError)
    _check_limits(path, data, policy)
    if known_groups is not None:
        _check_groups(path, data, policy, known_groups)
    for index, source in enumerate(policy.advisories):
        if source.path is not None and not (path.parent / source.path).exists():
            raise PolicyError(f"{_where(path, data, ('advisories', index, 'path'))}: advisories[{index}].path: "
                              f"{source.path} does not exist (relative to {path.parent})")
    for index, check in enumerate(policy.gates.health_checks):
        if check.playbook is not None and not (path.parent / check.playbook).is_file():
            raise PolicyError(f"{_where(path, data, ('gates', 'health_checks', index, 'playbook'))}: "
                              f"health check playbook {check.playbook} does not exist")
    return policy


def _check_limits(path: Path, data: Any, policy: Policy) -> None:
    """Settings that are each valid but contradict one another."""
    if policy.restart == "reboot" and policy.reboot == "never":
        raise PolicyError(f"{_where(path, data, ('restart',))}: restart: reboot reboots hosts whose processes still "
                          "run replaced code, which reboot: never forbids; choose one")
    if policy.reboot != "never" and policy.timeouts.idle_minutes <= REBOOT_WAIT_MINUTES:
        raise PolicyError(f"{_where(path, data, ('timeouts', 'idle_minutes'))}: timeouts.idle_minutes "
                          f"({policy.timeouts.idle_minutes:g}) must be longer than the {REBOOT_WAIT_MINUTES}-minute "
                          "wait for a rebooting host (or set reboot: never)")
    notice = policy.user_notice
    if notice.mode == "delay" and notice.delay_minutes >= policy.timeouts.idle_minutes:
        raise PolicyError(f"{_where(path, data, ('user_notice', 'delay_minutes'))}: user_notice.delay_minutes "
                          f"({notice.delay_minutes:g}) must be shorter than timeouts.idle_minutes "
                          f"({policy.timeouts.idle_minutes:g}): the wait would look like a hung host")
    for severity, days in policy.sla_days.items():
        if policy.approval.delay_days >= days:
            raise PolicyError(f"{_where(path, data, ('approval', 'delay_days'))}: approval.delay_days "
                              f"({policy.approval.delay_days}) is not shorter than sla_days.{severity} ({days}): "
                              f"{severity} fixes could never be installed in time")


def _check_groups(path: Path, data: Any, policy: Policy, known: set[str]) -> None:
    places: yamlsrc.GroupPlaces = [(("targets", "groups"), policy.targets.groups)]
    places += [(("windows", i, "groups"), w.groups) for i, w in enumerate(policy.windows)]
    places += [(("waves", i, "selector", "groups"), w.selector.groups) for i, w in enumerate(policy.waves) if w.selector]
    places += [(("thin_links", i, "groups"), link.groups) for i, link in enumerate(policy.thin_links)]
    problem = yamlsrc.unknown_group(path, data, places, known)
    if problem:
        raise PolicyError(problem)


def amount(value: int | str, total: int) -> int:
    """A count, or a percentage of `total` rounded up (so 10% of 5 hosts is 1, never 0)."""
    if isinstance(value, int):
        return value
    return math.ceil(Decimal(value.rstrip("%")) * total / 100)
