"""The notification policy: channels (webhook, SMTP, Jira, ServiceNow), routes from events to
channels, delivery settings. YAML validated before anything is queued; every error is
`file:line: what to fix`. Secrets are never in the file: each is the name of an environment
variable or a key in an Ansible Vault file, resolved only when a message is sent.

Every channel carries a credential: Jira and ServiceNow basic auth, the webhook's HMAC signature
(made with its secret, it authenticates the message), an SMTP login. So the HTTP channels need
https:// unless the channel says `insecure: true` (then warned about on every use), and an SMTP
password only travels inside TLS (STARTTLS or SMTPS)."""

from __future__ import annotations

import os
import re
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.errors import InputError, shown_url

DOCS = "docs/notifications.md"
# what happens that someone may need to hear about (docs/notifications.md explains each)
EVENTS = ("patch_failed", "gate_halted", "rollback_done", "cycle_completed", "critical_drift", "rule_failed",
          "non_compliant_digest", "sla_warning", "sla_breached")
TICKET_EVENTS = ("rule_failed", "patch_failed")  # a ticket is about one host and one rule or cycle
SEVERITIES = ("critical", "high", "medium", "low", "unknown")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class NotifyError(InputError):
    pass


class _Model(BaseModel):
    model_config = yamlsrc.STRICT


class Secret(_Model):
    """Where a secret comes from: an environment variable, or a key of an Ansible Vault file
    (decrypted with the vault password file ANSIBLE_VAULT_PASSWORD_FILE names)."""

    env: str | None = None
    vault: str | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if (self.env is None) == (self.vault is None):
            raise ValueError("give either env (a variable name) or vault (a file) with key")
        if self.env is not None and not _ENV.match(self.env):
            raise ValueError(f"env {self.env!r} is not an environment variable name")
        if self.vault is not None and not self.key:
            raise ValueError("vault needs key (the variable in the vault file)")
        return self

    def value(self, base: Path) -> str:
        """The secret itself; raises NotifyError naming the variable or file (never the value)."""
        if self.env is not None:
            found = os.environ.get(self.env)
            if not found:
                raise NotifyError(f"the environment variable {self.env} is not set")
            return found
        return _vault_value(base / str(self.vault), str(self.key))


def _vault_value(path: Path, key: str) -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

    password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not password_file:
        raise NotifyError(f"{path}: set ANSIBLE_VAULT_PASSWORD_FILE to decrypt it")
    try:
        password = Path(password_file).read_bytes().strip()
        text = path.read_bytes()
    except OSError as exc:
        raise NotifyError(f"{path}: cannot read the vault or its password file: {exc.strerror}") from exc
    try:
        plain = VaultLib([("default", VaultSecret(password))]).decrypt(text)
        data = yamlsrc.parse(plain.decode("utf-8", errors="replace"), path)
    except InputError:
        raise NotifyError(f"{path}: the decrypted vault is not valid YAML within Patchwave's limits") from None
    except Exception as exc:  # AnsibleError for a wrong password
        raise NotifyError(f"{path}: cannot decrypt with ANSIBLE_VAULT_PASSWORD_FILE ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or not isinstance(data.get(key), str | int):
        raise NotifyError(f"{path}: the vault has no value {key!r}")
    return str(data[key])


shown = shown_url  # channel URLs in messages and logs: no credentials, no query


def _http_url(value: str, insecure: bool) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{shown(value)!r} is not an http(s) URL")
    if parsed.username or parsed.password:
        raise ValueError("credentials do not belong in the URL: use the channel's secrets")
    if parsed.scheme == "http" and not insecure:
        raise ValueError(f"{shown(value)!r} is plain http, which would send the channel's credentials in the clear: use "
                         "https:// (or set insecure: true on the channel to accept that; every use is then warned "
                         "about and recorded)")
    if parsed.scheme == "https" and insecure:
        raise ValueError("insecure: true is only for an http:// URL and this one is https: remove insecure")
    return value.rstrip("/")


class _Channel(_Model):
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    ca_file: str | None = None  # a private CA for TLS; the system's CAs otherwise (verification is always on)


class _HttpChannel(_Channel):
    """A channel that sends its credential with every HTTP call (see the module docstring)."""

    # declared here, before the subclasses' `url`, so that the URL's validator sees it: pydantic
    # validates fields in order, a base class's first
    insecure: bool = False

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        return _http_url(value, info.data.get("insecure") is True)


class Webhook(_HttpChannel):
    type: Literal["webhook"]
    url: str
    secret: Secret  # the HMAC-SHA256 key


class Smtp(_Channel):
    type: Literal["smtp"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    smtps: bool = False  # TLS from the first byte (port 465) instead of STARTTLS
    username: Secret | None = None
    password: Secret | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _auth(self) -> Smtp:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.smtps and self.starttls and "starttls" in self.model_fields_set:
            raise ValueError("smtps: true is TLS from the start, starttls: true is TLS after the greeting: "
                             "choose one")
        if self.password is not None and not self.tls:
            raise ValueError("a password is only sent after STARTTLS or over SMTPS: set starttls: true (port 587) "
                             "or smtps: true (port 465)")
        return self

    @property
    def tls(self) -> bool:
        return self.smtps or self.starttls


class Jira(_HttpChannel):
    type: Literal["jira"]
    url: str
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]+$")
    issue_type: str = "Bug"
    user: Secret
    token: Secret
    close_transition: str = "Done"
    reopen_transition: str = "Reopen"
    # cloud: the search of Jira Cloud (/rest/api/3/search/jql); data-center: Jira Data Center's
    # (/rest/api/2/search); auto: whichever the server's serverInfo names
    deployment: Literal["auto", "cloud", "data-center"] = "auto"


class ServiceNow(_HttpChannel):
    type: Literal["servicenow"]
    url: str
    user: Secret
    password: Secret
    assignment_group: str | None = None
    # how a fixed incident is resolved and a failing one re-opened: the instance's own choices
    # (the defaults are the incident table's out-of-the-box ones: 6 Resolved, 2 In Progress)
    close_code: Annotated[str, Field(min_length=1, max_length=40)] = "Solution provided"
    close_state: Annotated[str, Field(pattern=r"^[0-9]{1,3}$")] = "6"
    reopen_state: Annotated[str, Field(pattern=r"^[0-9]{1,3}$")] = "2"


Channel = Annotated[Webhook | Smtp | Jira | ServiceNow, Field(discriminator="type")]
TICKET_TYPES = ("jira", "servicenow")


class RateLimit(_Model):
    messages: int = Field(ge=1)
    per_minutes: float = Field(gt=0)


class QuietHours(_Model):
    start: str
    end: str
    timezone: str = "UTC"
    except_severities: list[Literal["critical", "high", "medium", "low", "unknown"]] = ["critical"]

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time HH:MM")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return yamlsrc.time_zone(value)

    def holds_until(self, at: datetime) -> datetime | None:
        """When quiet hours that cover `at` end (None when `at` is outside them)."""
        from datetime import timedelta

        zone = ZoneInfo(self.timezone)
        local = at.astimezone(zone)
        start, end = (time.fromisoformat(self.start), time.fromisoformat(self.end))
        now = local.time()
        inside = (start <= now < end) if start < end else (now >= start or now < end)
        if not inside:
            return None
        until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if until <= local:
            until += timedelta(days=1)
        return until


class Route(_Model):
    name: str = Field(pattern=_NAME.pattern)
    events: list[Literal["patch_failed", "gate_halted", "rollback_done", "cycle_completed", "critical_drift",
                         "rule_failed", "non_compliant_digest", "sla_warning", "sla_breached"]] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    severities: list[Literal["critical", "high", "medium", "low", "unknown"]] = []
    groups: list[str] = []
    device_types: list[str] = []
    owners: list[str] = []
    rate_limit: RateLimit | None = None
    quiet_hours: QuietHours | None = None


class Delivery(_Model):
    max_attempts: int = Field(default=10, ge=1, le=100)
    backoff_seconds: float = Field(default=30, gt=0)
    max_backoff_seconds: float = Field(default=3600, gt=0)


class Tickets(_Model):
    """The ops side of the ticket loop: a ticket ops marks done is confirmed by a rescan or a
    reassessment of its host within this many minutes (`patchwave notify sync`, or a schedule's
    `ticket-sync` job at least that often)."""

    confirm_within_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)


class NotifyPolicy(_Model):
    version: Literal[1] = 1
    channels: dict[str, Channel]
    routes: list[Route] = Field(min_length=1)
    delivery: Delivery = Delivery()
    sla_warning_days: int = Field(default=3, ge=0, le=365)
    tickets: Tickets = Tickets()

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)


def load(path: Path, known_groups: set[str] | None = None) -> NotifyPolicy:
    """Read and validate a notification policy; `known_groups` (from the inventory) checks group names."""
    data = yamlsrc.load_mapping(path, "notification policy", DOCS, NotifyError)
    policy = yamlsrc.validate(NotifyPolicy, data, path, "notification policy", DOCS, NotifyError)
    for name in policy.channels:
        if not _NAME.match(name):
            raise NotifyError(f"{yamlsrc.where(path, data, ('channels', name))}: channels.{name}: a channel name is "
                              "lower-case letters, digits, '-', '_' or '.'")
    for index, channel in enumerate(policy.channels.values()):
        name = list(policy.channels)[index]
        if channel.ca_file is not None and not (path.parent / channel.ca_file).is_file():
            raise NotifyError(f"{yamlsrc.where(path, data, ('channels', name, 'ca_file'))}: channels.{name}.ca_file: "
                              f"{channel.ca_file} does not exist (relative to {path.parent})")
    seen: set[str] = set()
    for index, route in enumerate(policy.routes):
        loc: tuple[str | int, ...] = ("routes", index)
        if route.name in seen:
            raise NotifyError(f"{yamlsrc.where(path, data, (*loc, 'name'))}: routes[{index}].name: "
                              f"{route.name!r} is used twice")
        seen.add(route.name)
        for position, channel_name in enumerate(route.channels):
            where = yamlsrc.where(path, data, (*loc, "channels", position))
            if channel_name not in policy.channels:
                raise NotifyError(f"{where}: routes[{index}].channels[{position}]: unknown channel {channel_name!r}; "
                                  f"the policy has {', '.join(sorted(policy.channels)) or 'none'}")
            kind = policy.channels[channel_name].type
            if kind in TICKET_TYPES and any(e not in TICKET_EVENTS for e in route.events):
                wrong = ", ".join(e for e in route.events if e not in TICKET_EVENTS)
                raise NotifyError(f"{where}: routes[{index}]: {channel_name} is a ticket system ({kind}); tickets are "
                                  f"only for {' and '.join(TICKET_EVENTS)}, not {wrong}: route those to a "
                                  "webhook or e-mail channel")
        if known_groups is not None:
            for position, group in enumerate(route.groups):
                if group not in known_groups:
                    raise NotifyError(f"{yamlsrc.where(path, data, (*loc, 'groups', position))}: "
                                      f"routes[{index}].groups: unknown group {group!r}; the inventory has "
                                      f"{', '.join(sorted(known_groups)) or 'no groups'}")
    return policy


def base_dir(path: Path) -> Path:
    """Relative paths in a notification policy (vault files, CA files) are relative to its folder."""
    return path.resolve().parent


def describe(value: Any) -> str:
    """A channel for logs: its type and where it points, never a secret."""
    url = getattr(value, "url", None)
    target = shown(url) if url else f"{getattr(value, 'host', '')}:{getattr(value, 'port', '')}"
    return f"{value.type} {target}"
