"""OSV advisories (the JSON format Debian, Ubuntu and others publish) → Advisory records, and
matching of pending updates against them.

Sources are a file, a directory of files, or an http(s)/file URL; a document may hold one
record or a list of records. Severity comes from the CVSS base score when the record has a
vector (v3.x or v4.0), else from the Debian urgency, else from `database_specific.severity`.

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
from patchwave.models import Advisory, PendingUpdate

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


def parse(source: str | Path, record: Any, index: int | None = None) -> Advisory:
    where = f"{source}" if index is None else f"{source}: record {index}"
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise InputError(f"{where}: OSV record without a string 'id'")
    where = f"{source}: advisory {record['id']}"
    affected = record.get("affected")
    if not isinstance(affected, list) or not affected:
        raise InputError(f"{where}: 'affected' must be a non-empty list")
    fixed: dict[str, str] = {}
    urgencies: list[str] = []
    for position, entry in enumerate(affected):
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            raise InputError(f"{where}: affected[{position}].package.name is missing")
        ranges = entry.get("ranges", [])
        if not isinstance(ranges, list):
            raise InputError(f"{where}: affected[{position}].ranges must be a list")
        for rng in ranges:
            events = rng.get("events", []) if isinstance(rng, dict) else None
            if not isinstance(events, list):
                raise InputError(f"{where}: affected[{position}].ranges[].events must be a list")
            for event in events:
                if isinstance(event, dict) and "fixed" in event:
                    version = str(event["fixed"])
                    try:
                        Version(version)
                    except ValueError as exc:
                        raise InputError(f"{where}: affected[{position}]: fixed version {version!r} is not a "
                                         f"Debian version") from exc
                    fixed[package["name"]] = version
        for block in ("ecosystem_specific", "database_specific"):
            extra = entry.get(block) or {}
            for key in ("urgency", "severity"):
                if isinstance(extra.get(key), str):
                    urgencies.append(extra[key].lower())
    database = record.get("database_specific") or {}
    if isinstance(database.get("severity"), str):
        urgencies.append(database["severity"].lower())
    score, vector = _cvss(where, record.get("severity"))
    if score is not None:
        severity = severity_from_score(score)
    else:
        severity = min((_URGENCY.get(u, "unknown") for u in urgencies), key=rank, default="unknown")
    aliases = record.get("aliases") or []
    if not isinstance(aliases, list):
        raise InputError(f"{where}: 'aliases' must be a list")
    return Advisory(id=record["id"], aliases=tuple(str(a) for a in aliases), severity=severity,
                    published=str(record.get("published", "")), summary=str(record.get("summary", "")),
                    fixed=fixed, cvss_score=score, cvss_vector=vector)


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


def matching(update: PendingUpdate, advisories: list[Advisory]) -> list[Advisory]:
    """Advisories this update fixes: installed < fixed <= candidate (Debian version order)."""
    found = []
    for advisory in advisories:
        fixed = advisory.fixed.get(update.name) or advisory.fixed.get(update.source)
        if fixed is None:
            continue
        if Version(update.candidate) >= Version(fixed) and (
            update.installed is None or Version(update.installed) < Version(fixed)
        ):
            found.append(advisory)
    return found
