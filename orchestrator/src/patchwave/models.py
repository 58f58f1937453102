"""The domain, as frozen dataclasses. Planning code takes and returns these; only the store turns
them into rows and only the runner makes them out of Ansible events. Their states: states.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    # the OSV ecosystem of the host's release (Debian:12, Ubuntu:22.04:LTS), from the scan's
    # os-release; '' when the scan did not say (a scan from before it did)
    ecosystem: str = ""


@dataclass(frozen=True)
class Span:
    """One affected interval of an OSV range: from `introduced` ('0': every version) up to, not
    including, `fixed`; `fixed` None: no version fixes it (yet). Debian versions."""

    introduced: str
    fixed: str | None = None
    last_affected: str | None = None  # instead of `fixed`: affected up to and including this one


@dataclass(frozen=True)
class Affected:
    """One `affected[]` entry of an OSV record: a package of one ecosystem and where it is affected.
    Debian's and Ubuntu's records name the SOURCE package (openssl, not libssl3)."""

    ecosystem: str  # as the record gives it: Debian:12, Ubuntu:22.04:LTS, Ubuntu:Pro:18.04:LTS, Debian ('' none)
    package: str
    spans: tuple[Span, ...] = ()
    binaries: tuple[str, ...] = ()  # binary packages the record lists for it (Ubuntu's ecosystem_specific)


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    severity: str  # critical | high | medium | low | unknown
    published: str
    summary: str
    # package name -> fixed version for every release: an advisory made by hand, not from OSV
    # (a parsed record keeps its fixed versions per ecosystem and package in `affected`)
    fixed: dict[str, str] = field(default_factory=dict)
    cvss_score: float | None = None
    cvss_vector: str | None = None
    affected: tuple[Affected, ...] = ()
    upstream: tuple[str, ...] = ()  # OSV `upstream`: the CVEs a DSA, DLA or USN is about

    @property
    def cves(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a for a in (self.id, *self.aliases, *self.upstream) if a.startswith("CVE-")))

    @property
    def names(self) -> tuple[str, ...]:
        """Every id it is known by (its own, aliases, upstream CVEs): what --advisory may name."""
        return tuple(dict.fromkeys((self.id, *self.aliases, *self.upstream)))


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
    ecosystem: str = ""  # the release of the host it was made for (PendingUpdate.ecosystem)


@dataclass(frozen=True)
class Changelog:
    """What the Debian changelog of a staged package says about the versions it brings (the
    entries after the installed version, up to the staged one): the most urgent entry's urgency
    and the CVE ids named. From the host's stage result, so it is the package's own account,
    next to (never instead of) what the advisories say."""

    host: str
    name: str
    version: str  # the staged version
    urgency: str | None  # emergency | critical | high | medium | low, None when no entry gives one
    cves: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()  # the versions of the changelog entries read, newest first


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


@dataclass(frozen=True)
class CycleOptions:
    """How a cycle was started, kept with it so that a resume, a rollback or a catch-up of it
    goes on the same way: its hosts, the policy's folder (its relative advisory paths), an
    advisory source given directly, forced windows, skipped soaks, an emergency's advisories, and
    a catch-up's carried approvals (the missed cycle; (ecosystem, name, version) each)."""

    hosts: tuple[str, ...] = ()
    policy_dir: Path | None = None
    advisories: Path | None = None
    force_window: bool = False
    skip_soak: bool = False
    emergency: tuple[str, ...] = ()
    carry_over: tuple[str, tuple[tuple[str, str, str], ...]] | None = None

    def stored(self) -> dict[str, Any]:
        """The JSON the store keeps (the shape schema 3 introduced)."""
        data: dict[str, Any] = {"hosts": list(self.hosts), "policy_dir": str(self.policy_dir) if self.policy_dir else None,
                                "advisories": str(self.advisories) if self.advisories else None,
                                "force_window": self.force_window, "skip_soak": self.skip_soak,
                                "emergency": sorted(self.emergency)}
        if self.carry_over is not None:
            data["carry_over"] = {"cycle": self.carry_over[0], "approved": sorted(map(list, self.carry_over[1]))}
        return data

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> CycleOptions:
        data = data or {}
        carry = data.get("carry_over")
        return cls(hosts=tuple(data.get("hosts") or ()),
                   policy_dir=Path(data["policy_dir"]) if data.get("policy_dir") else None,
                   advisories=Path(data["advisories"]) if data.get("advisories") else None,
                   force_window=bool(data.get("force_window")), skip_soak=bool(data.get("skip_soak")),
                   emergency=tuple(data.get("emergency") or ()),
                   carry_over=(str(carry["cycle"]), tuple((str(e), str(n), str(v)) for e, n, v in carry["approved"]))
                   if carry else None)


# the exit codes of a run; 2 is bad input, refused before anything runs (errors.py)
EXIT_OK, EXIT_HOSTS_FAILED, EXIT_STOPPED = 0, 1, 3


@dataclass(frozen=True)
class Finished:
    """How a run ended: its report (what `--json` prints), the workbook written, what was queued
    and sent to notification channels (None without a notification policy), and the exit code."""

    report: dict[str, Any]
    workbook: Path | None
    notified: dict[str, Any] | None
    exit_code: int
