"""OSV advisories (the JSON format Debian, Ubuntu and others publish) → Advisory records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from debian.debian_support import Version

from patchwave.errors import InputError
from patchwave.models import Advisory, PendingUpdate

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
_URGENCY = {"critical": "critical", "emergency": "critical", "high": "high", "medium": "medium",
            "low": "low", "negligible": "low", "unimportant": "low", "not yet assigned": "unknown"}


def load_dir(path: Path) -> list[Advisory]:
    if not path.exists():
        raise InputError(f"{path}: no such advisory file or directory")
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    return [parse(f, _read(f)) for f in files]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read advisory: {exc.strerror}") from exc


def parse(source: Path, record: Any) -> Advisory:
    where = f"{source}"
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise InputError(f"{where}: OSV record without a string 'id'")
    where = f"{source}: advisory {record['id']}"
    affected = record.get("affected")
    if not isinstance(affected, list) or not affected:
        raise InputError(f"{where}: 'affected' must be a non-empty list")
    fixed: dict[str, str] = {}
    urgencies: list[str] = []
    for index, entry in enumerate(affected):
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            raise InputError(f"{where}: affected[{index}].package.name is missing")
        for rng in entry.get("ranges", []):
            for event in rng.get("events", []):
                if "fixed" in event:
                    fixed[package["name"]] = str(event["fixed"])
        urgency = (entry.get("ecosystem_specific") or {}).get("urgency")
        if isinstance(urgency, str):
            urgencies.append(urgency.lower())
    severity = "unknown"
    for urgency in urgencies:
        mapped = _URGENCY.get(urgency, "unknown")
        if SEVERITIES.index(mapped) < SEVERITIES.index(severity):
            severity = mapped
    aliases = record.get("aliases") or []
    return Advisory(id=record["id"], aliases=tuple(str(a) for a in aliases), severity=severity,
                    published=str(record.get("published", "")), summary=str(record.get("summary", "")),
                    fixed=fixed)


def matching(update: PendingUpdate, advisories: list[Advisory]) -> list[Advisory]:
    """Advisories this update fixes: installed < fixed <= candidate."""
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
