"""The domain, as frozen dataclasses. Planning code takes and returns these; only store.py
turns them into rows and only runner.py makes them out of Ansible events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What the confirm rescan proves (the first six, from the collection's confirm role), plus what
# only the orchestrator knows: a host it could not reach, and one whose wave never ran.
END_STATES = ("patched", "patched-pending-reboot", "partially-patched", "failed", "rolled-back", "excluded",
              "unreachable", "not-reached")


# the end states that count as a failure of the host (exit code 1, reports, repeat offenders)
FAILED_STATES = ("failed", "partially-patched", "unreachable", "not-reached")


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...] = ()
    device_type: str = ""
    owner: str = ""
    criticality: int = 0
    release: str = ""


@dataclass(frozen=True)
class PendingUpdate:
    host: str
    name: str
    installed: str | None
    candidate: str
    source: str
    security: bool
    held: bool
    new_install: bool
    suites: tuple[str, ...] = ()
    required_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    severity: str  # critical | high | medium | low | unknown
    published: str
    summary: str
    fixed: dict[str, str] = field(default_factory=dict)  # package name -> first fixed version
    cvss_score: float | None = None
    cvss_vector: str | None = None

    @property
    def cves(self) -> tuple[str, ...]:
        return tuple(a for a in (self.id, *self.aliases) if a.startswith("CVE-"))


@dataclass(frozen=True)
class Decision:
    host: str
    name: str
    installed: str | None
    version: str
    approved: bool
    reason: str
    advisories: tuple[str, ...] = ()
    severity: str = ""
    cves: tuple[str, ...] = ()
    published: str = ""  # earliest publication date of the advisories it fixes
    sla_due: str = ""  # YYYY-MM-DD: published + the policy's SLA days for its severity


@dataclass(frozen=True)
class Manifest:
    cycle_id: str
    created: str
    decisions: tuple[Decision, ...]

    def packages_for(self, host: str) -> list[str]:
        return [f"{d.name}={d.version}" for d in self.decisions if d.host == host and d.approved]

    def hosts_with_packages(self) -> list[str]:
        return sorted({d.host for d in self.decisions if d.approved})

    def as_playbook_vars(self) -> dict[str, Any]:
        hosts = {h: {"packages": self.packages_for(h)} for h in self.hosts_with_packages()}
        return {"cycle_id": self.cycle_id, "created": self.created, "hosts": hosts}


@dataclass(frozen=True)
class Wave:
    index: int
    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class HostResult:
    """What one playbook run did on one host; `data` is the patchwave module's own result."""

    host: str
    ok: bool
    unreachable: bool = False
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
