"""OSV advisories (the JSON format Debian, Ubuntu and others publish) → Advisory records, and
matching of pending updates against them.

Sources are a file, a directory of files, or an http(s)/file URL; a document may hold one
record or a list of records. Severity comes from the CVSS base score when the record has a
vector (v3.x or v4.0), else from the Debian urgency, `database_specific.severity` or Ubuntu's
named severity (the most severe of them).

Fixed versions are per release: Debian's records (DSA-, DLA-, DEBIAN-CVE-) and Ubuntu's (USN-,
UBUNTU-CVE-) give one `affected[]` entry per release (`Debian:12`, `Ubuntu:22.04:LTS`) and name
the source package. An update is matched by its host's ecosystem (from the scan's os-release)
and its source package, against that release's fixed version only (`fixed_version`): a fix
published for Debian 11 never classifies a Debian 12 update, however the versions compare.

A policy's URL is https:// unless its source says `insecure: true` (policy.py checks that), and
an https:// fetch follows a redirect only to https://: what a source serves decides what is
approved, so a redirect must not quietly downgrade it to plain http.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError
from debian.debian_support import Version

from patchwave.errors import InputError, shown_url
from patchwave.models import Advisory, Affected, PendingUpdate, Span
from patchwave.patching.policy import Policy

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
_URGENCY = {"critical": "critical", "emergency": "critical", "high": "high", "medium": "medium",
            "low": "low", "negligible": "low", "unimportant": "low", "moderate": "medium", "important": "high"}


def severity_from_score(score: float) -> str:
    """CVSS v3/v4 qualitative rating."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0:
        return "low"
    return "unknown"


def rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Redirects as urllib follows them, except from https to anything but https (and from http
    to anything but http or https: urllib would also follow one to ftp)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        allowed = ("https",) if urlsplit(req.full_url).scheme == "https" else ("http", "https")
        if urlsplit(newurl).scheme not in allowed:
            fp.close()
            raise InputError(f"{shown(req.full_url)}: cannot fetch advisories: redirected (HTTP {code}) to "
                             f"{shown(newurl)}, which is not followed: an {urlsplit(req.full_url).scheme} advisory "
                             f"source is only redirected to {' or '.join(allowed)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


shown = shown_url  # advisory URLs in messages: no credentials, no query


# the largest advisory document read (one file or one URL's answer): Debian's whole OSV feed for a
# release is a few MB
MAX_CHARS = 64 * 1024 * 1024


def load(source: str | Path, timeout: float = 30) -> list[Advisory]:
    """Every advisory in a file, a directory (*.json) or an http(s)/file URL."""
    text = str(source)
    if text.startswith(("http://", "https://", "file://")):
        opener = urllib.request.build_opener(_NoDowngrade)
        try:
            with opener.open(text, timeout=timeout) as response:
                body = response.read(MAX_CHARS + 1).decode("utf-8")
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{shown(text)}: cannot fetch advisories: {exc}") from None
        except ValueError:  # http.client's InvalidURL (a port that is not a number, ...): it quotes the URL
            raise InputError(f"{shown(text)}: cannot fetch advisories: not a valid URL") from None
        return _parse_document(shown(text), body)
    path = Path(text)
    if not path.exists():
        raise InputError(f"{path}: no such advisory file or directory")
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    found: list[Advisory] = []
    for file in files:
        try:
            with file.open("rb") as handle:
                body = handle.read(MAX_CHARS + 1).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: cannot read advisory: {exc}") from exc
        found.extend(_parse_document(str(file), body))
    return found


# kept for callers that think in directories
load_dir = load


def _parse_document(where: str, body: str) -> list[Advisory]:
    if len(body) > MAX_CHARS:
        raise InputError(f"{where}: larger than {MAX_CHARS // 1024 // 1024} MB, more than any advisory feed; split it "
                         "into files of a directory")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError:
        raise InputError(f"{where}: invalid JSON: nested too deeply for an OSV record") from None
    records = data if isinstance(data, list) else [data]
    advisories = []
    for index, record in enumerate(records):
        try:
            advisories.append(parse(where, record, index if isinstance(data, list) else None))
        except InputError as exc:
            raise InputError(_with_line(exc.message, where, body, record)) from None
    return advisories


def _with_line(message: str, where: str, body: str, record: Any) -> str:
    """`file:line:` for a bad record: the line of its id in the document (JSON keeps no lines)."""
    ident = record.get("id") if isinstance(record, dict) else None
    at = body.find(json.dumps(ident)) if isinstance(ident, str) and ident else -1
    line = body.count("\n", 0, at) + 1 if at >= 0 else 1
    return f"{where}:{line}{message.removeprefix(where)}" if message.startswith(where) else message


def parse(source: str | Path, record: Any, index: int | None = None) -> Advisory:  # noqa: PLR0912 - each optional field of an OSV record is checked where it is read
    """One OSV record. Every `affected[]` entry of a dpkg ecosystem (Debian or Ubuntu, with or
    without a release, or none named) is kept with its ecosystem, package and affected spans;
    entries of other ecosystems (PyPI, Alpine ...) can never match a Debian-family host and are
    only checked for shape. Versions of ECOSYSTEM ranges (or ranges without a type) must be
    Debian versions; GIT and SEMVER ranges say nothing about Debian versions and are skipped.
    A record's `versions` list is not used: Debian and Ubuntu enumerate archive versions there,
    and a version missing from it (a backport, a rebuild) is no proof of a fix."""
    where = f"{source}" if index is None else f"{source}: record {index}"
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise InputError(f"{where}: OSV record without a string 'id'")
    where = f"{source}: advisory {record['id']}"
    affected = record.get("affected")
    if not isinstance(affected, list) or not affected:
        raise InputError(f"{where}: 'affected' must be a non-empty list")
    entries: list[Affected] = []
    urgencies: list[str] = []
    for position, entry in enumerate(affected):
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            raise InputError(f"{where}: affected[{position}].package.name is missing")
        ecosystem = package.get("ecosystem") or ""
        if not isinstance(ecosystem, str):
            raise InputError(f"{where}: affected[{position}].package.ecosystem must be text")
        ranges = entry.get("ranges", [])
        if not isinstance(ranges, list):
            raise InputError(f"{where}: affected[{position}].ranges must be a list")
        dpkg = _dpkg_ecosystem(ecosystem)
        spans: list[Span] = []
        for rng in ranges:
            events = rng.get("events", []) if isinstance(rng, dict) else None
            if not isinstance(events, list):
                raise InputError(f"{where}: affected[{position}].ranges[].events must be a list")
            if dpkg and rng.get("type", "ECOSYSTEM") == "ECOSYSTEM":
                spans += _spans(f"{where}: affected[{position}]", events)
        for block in ("ecosystem_specific", "database_specific"):
            extra = entry.get(block) or {}
            for key in ("urgency", "severity"):
                if isinstance(extra, dict) and isinstance(extra.get(key), str):
                    urgencies.append(extra[key].lower())
        if dpkg:
            entries.append(Affected(ecosystem=ecosystem, package=package["name"], spans=tuple(spans),
                                    binaries=_binaries(entry.get("ecosystem_specific"))))
    database = record.get("database_specific") or {}
    if isinstance(database, dict) and isinstance(database.get("severity"), str):
        urgencies.append(database["severity"].lower())
    urgencies += _named_severities(record.get("severity"))
    score, vector = _cvss(where, record.get("severity"))
    if score is not None:
        severity = severity_from_score(score)
    else:
        severity = min((_URGENCY.get(u.rstrip("*"), "unknown") for u in urgencies), key=rank, default="unknown")
    aliases = record.get("aliases") or []
    if not isinstance(aliases, list):
        raise InputError(f"{where}: 'aliases' must be a list")
    upstream = record.get("upstream") or []
    if not isinstance(upstream, list):
        raise InputError(f"{where}: 'upstream' must be a list")
    return Advisory(id=record["id"], aliases=tuple(str(a) for a in aliases), severity=severity,
                    published=str(record.get("published", "")), summary=str(record.get("summary", "")),
                    cvss_score=score, cvss_vector=vector, affected=tuple(entries),
                    upstream=tuple(str(u) for u in upstream))


# the distributions whose versions are dpkg versions, as OSV names them
DPKG_DISTRIBUTIONS = ("Debian", "Ubuntu")
_EVENT_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 1}


def _dpkg_ecosystem(ecosystem: str) -> bool:
    return not ecosystem or ecosystem.split(":", 1)[0] in DPKG_DISTRIBUTIONS


def _spans(where: str, events: list[Any]) -> list[Span]:
    """The affected intervals of one range, the way OSV defines them: events in version order,
    each `introduced` opening an interval and the next `fixed` (or `last_affected`) closing it.
    A range without an `introduced` starts at '0' (every version)."""
    points: list[tuple[str, str]] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                version = str(event[kind])
                if version != "0":
                    try:
                        Version(version)
                    except ValueError as exc:
                        raise InputError(f"{where}: {kind} version {version!r} is not a Debian version") from exc
                points.append((kind, version))
    if not any(kind == "introduced" for kind, _version in points):
        points.insert(0, ("introduced", "0"))
    points.sort(key=lambda p: (p[1] != "0", Version(p[1]), _EVENT_ORDER[p[0]]))
    spans: list[Span] = []
    start: str | None = None
    for kind, version in points:
        if kind == "introduced":
            start = version if start is None else start
        elif start is not None:
            spans.append(Span(start, fixed=version) if kind == "fixed" else Span(start, last_affected=version))
            start = None
    if start is not None:
        spans.append(Span(start))
    return spans


def _binaries(extra: Any) -> tuple[str, ...]:
    """The binary package names an entry lists (Ubuntu: ecosystem_specific.binaries, a list of
    {binary_name, binary_version}); anything else there is ignored, it only widens matching."""
    found = extra.get("binaries") if isinstance(extra, dict) else None
    if not isinstance(found, list):
        return ()
    names = [b.get("binary_name") if isinstance(b, dict) else b for b in found]
    return tuple(n for n in names if isinstance(n, str) and n)


def _named_severities(severities: Any) -> list[str]:
    """Qualitative severities a record states without a vector (Ubuntu's {"type": "Ubuntu",
    "score": "medium"})."""
    if not isinstance(severities, list):
        return []
    return [str(s["score"]).lower() for s in severities
            if isinstance(s, dict) and s.get("type") not in ("CVSS_V2", "CVSS_V3", "CVSS_V4")
            and isinstance(s.get("score"), str)]


def _cvss(where: str, severities: Any) -> tuple[float | None, str | None]:
    if severities is None:
        return None, None
    if not isinstance(severities, list):
        raise InputError(f"{where}: 'severity' must be a list")
    best: tuple[float | None, str | None] = (None, None)
    for item in severities:
        kind = item.get("type") if isinstance(item, dict) else None
        vector = item.get("score") if isinstance(item, dict) else None
        if kind not in ("CVSS_V3", "CVSS_V4") or not isinstance(vector, str):
            continue
        try:
            score = float(CVSS4(vector).base_score) if kind == "CVSS_V4" else float(CVSS3(vector).base_score)
        except (CVSSError, ValueError, KeyError) as exc:
            raise InputError(f"{where}: invalid {kind} vector {vector!r}: {exc}") from exc
        if best[0] is None or score > best[0]:
            best = (score, vector)
    return best


def release_of(ecosystem: str) -> tuple[str, str, bool]:
    """(distribution, release, through Ubuntu Pro) of an OSV ecosystem: Debian:12 → (Debian, 12,
    False), Ubuntu:22.04:LTS → (Ubuntu, 22.04, False), Ubuntu:Pro:18.04:LTS → (Ubuntu, 18.04,
    True), Debian → (Debian, '', False): no release given. The LTS mark is not part of the release
    (22.04 is 22.04), and a Debian release is its major number."""
    parts = [p for p in ecosystem.split(":") if p]
    distribution, rest = (parts[0], parts[1:]) if parts else ("", [])
    pro = bool(rest) and rest[0] == "Pro"
    rest = [p for p in rest[1 if pro else 0:] if p != "LTS"]
    release = rest[0] if rest else ""
    return distribution, release.split(".")[0] if distribution == "Debian" else release, pro


def _closeness(entry: str, host: str) -> int | None:
    """How an entry's ecosystem names the host's release: 0 the same release, 1 the same release
    through Ubuntu Pro (its fixes come from the ESM archive, so only a host that has it reaches
    them), 2 no release at all; None: another release or distribution, never this host's."""
    distribution, release, pro = release_of(entry)
    host_distribution, host_release, _pro = release_of(host)
    if not release:
        return 2 if not distribution or not host_distribution or distribution == host_distribution else None
    if host_release and (distribution, release) == (host_distribution, host_release):
        return 1 if pro else 0
    return None


def _bare(name: str) -> str:
    return name.partition(":")[0]  # libssl3:i386 is libssl3 of another architecture


def entries_for(update: PendingUpdate, advisory: Advisory) -> list[Affected]:
    """The entries of `advisory` that speak about this update: those of the host's ecosystem
    (the closest one the record has: the host's release, then its release through Ubuntu Pro,
    then no release) naming the update's SOURCE package; only when none does, those naming its
    binary package exactly (or listing it among their binaries). A record for another release
    never applies, and an update of unknown ecosystem (a scan that did not say) only meets
    entries that give no release."""
    source, binary = _bare(update.source or update.name), _bare(update.name)
    legacy = tuple(Affected("", name, (Span("0", fixed=version),)) for name, version in advisory.fixed.items())
    by_closeness: dict[int, list[Affected]] = {}
    for entry in (*advisory.affected, *legacy):
        if _bare(entry.package) not in (source, binary) and binary not in map(_bare, entry.binaries):
            continue  # most records are about other packages: the cheap test first
        closeness = _closeness(entry.ecosystem, update.ecosystem)
        if closeness is not None:
            by_closeness.setdefault(closeness, []).append(entry)
    for closeness in sorted(by_closeness):
        candidates = by_closeness[closeness]
        named = ([e for e in candidates if _bare(e.package) == source]
                 or [e for e in candidates if _bare(e.package) == binary or binary in map(_bare, e.binaries)])
        if named:
            return named
    return []


def _affected(version: Version, span: Span) -> bool:
    if span.introduced != "0" and version < Version(span.introduced):
        return False
    if span.fixed is not None:
        return version < Version(span.fixed)
    if span.last_affected is not None:
        return version <= Version(span.last_affected)
    return True


def fixed_version(update: PendingUpdate, advisory: Advisory) -> str | None:
    """The fixed version of `advisory` that this update brings to its host, None when it fixes
    nothing there. Only the host's release's entries count (entries_for). The update fixes the
    advisory when the installed version is affected (in one of the spans; a new package counts
    as affected), the candidate is in none (a candidate that leaves one affected branch for
    another is still vulnerable), and a `fixed` event lies above the installed version and at or
    below the candidate: the smallest such one is the fix it reaches, whatever order the record
    lists its ranges in. A record that only says `last_affected` names no fixed version and
    classifies nothing."""
    spans = [s for entry in entries_for(update, advisory) for s in entry.spans]
    if not spans:
        return None
    try:
        installed = Version(update.installed) if update.installed is not None else None
        candidate = Version(update.candidate)
    except ValueError:  # not a Debian version: no Debian advisory can speak about it
        return None
    if installed is not None and not any(_affected(installed, s) for s in spans):
        return None
    if any(_affected(candidate, s) for s in spans):
        return None
    fixes = [Version(s.fixed) for s in spans if s.fixed is not None]
    reached = [f for f in fixes if (installed is None or installed < f) and f <= candidate]
    return str(min(reached)) if reached else None


def matching(update: PendingUpdate, advisories: list[Advisory]) -> list[Advisory]:
    """Advisories this update fixes on its host's release (fixed_version)."""
    return [a for a in advisories if fixed_version(update, a) is not None]


class ByPackage:
    """The advisories that name each package (source, binary, or one of Ubuntu's binaries), so
    that a fleet's updates are each matched against the few records about them rather than the
    whole feed (Debian's has tens of thousands). The order of the list given is kept."""

    def __init__(self, advisories: list[Advisory]) -> None:
        self._named: dict[str, list[int]] = {}
        self._all = advisories
        for position, advisory in enumerate(advisories):
            names = {_bare(n) for e in advisory.affected for n in (e.package, *e.binaries)} | set(advisory.fixed)
            for name in names:
                self._named.setdefault(name, []).append(position)

    def about(self, update: PendingUpdate) -> list[Advisory]:
        positions = {p for n in {_bare(update.source or update.name), _bare(update.name)} for p in self._named.get(n, [])}
        return [self._all[p] for p in sorted(positions)]


def load_advisories(policy: Policy, policy_dir: Path | None, extra: Path | None) -> list[Advisory]:
    """The policy's advisory sources (paths relative to the policy file) plus one given directly."""
    sources: list[str | Path] = [s.url or (policy_dir or Path.cwd()) / str(s.path) for s in policy.advisories]
    if extra is not None:
        sources.append(extra)
    return [a for source in sources for a in load(source)]
