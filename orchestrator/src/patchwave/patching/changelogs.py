"""What the Debian changelogs of staged packages say, from the stage module's result.

The stage module (patchwave.endpoint.stage_updates) reads each staged package's changelog and
gives, for every entry of its `staged` list, `changelog`: {"urgency": "emergency" | "critical" |
"high" | "medium" | "low" | None, "cves": ["CVE-2025-1234", ...], "versions": ["3.0.17-1~deb12u3",
...]} about the changelog entries newer than the installed version (the most urgent entry's
urgency, the CVE ids they name, their versions newest first), or None when the package has no
changelog (plugins/module_utils/changelog.py of the collection states the same contract).
A stage module from before says nothing (no `changelog` key): nothing is recorded then.

This is the package maintainers' own account, kept next to what the advisories say, never in
their place: a changelog that names a CVE is evidence, not an advisory with a fixed version.
The result comes from the host, so only the expected shapes are kept (an urgency Debian defines,
CVE ids, short version strings); anything else is left out rather than refused: it decides nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from patchwave.models import Changelog

# Debian policy 5.6.17: the urgency values of a changelog entry
URGENCIES = ("emergency", "critical", "high", "medium", "low")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,12}$")
_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~:_-]{0,254}$")  # a package name or a Debian version
MAX_ITEMS = 500  # CVEs or versions per package: more than any real changelog stretch names


def from_stage_result(host: str, result: dict[str, Any]) -> list[Changelog]:
    """One record per staged package whose result carries a changelog."""
    staged = result.get("staged") if isinstance(result, dict) else None
    found: list[Changelog] = []
    for entry in staged if isinstance(staged, list) else []:
        log = entry.get("changelog") if isinstance(entry, dict) else None
        name, version = (entry.get("name"), entry.get("version")) if isinstance(entry, dict) else (None, None)
        if not isinstance(log, dict) or not _text(name) or not _text(version):
            continue
        urgency = log.get("urgency")
        urgency = urgency.lower() if isinstance(urgency, str) and urgency.lower() in URGENCIES else None
        found.append(Changelog(host=host, name=str(name), version=str(version), urgency=urgency,
                               cves=_listed(log.get("cves"), lambda c: bool(_CVE.match(c)), sort=True),
                               versions=_listed(log.get("versions"), _text)))
    return found


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(_TEXT.match(value))


def _listed(values: Any, keep: Callable[[str], bool], sort: bool = False) -> tuple[str, ...]:
    items = [v for v in values[:MAX_ITEMS] if isinstance(v, str) and keep(v)] if isinstance(values, list) else []
    unique = list(dict.fromkeys(items))
    return tuple(sorted(unique) if sort else unique)
