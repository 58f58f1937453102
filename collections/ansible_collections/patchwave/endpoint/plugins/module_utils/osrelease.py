# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's OS release, from its own os-release file, and the OSV ecosystem that names it.

Advisories give the fixed version of a package per release (`Debian:12`, `Ubuntu:22.04:LTS`):
the orchestrator can only tell which fix applies to a host when the host says which release it
runs. Parsing is pure; only `read` touches the file system, and takes its paths as arguments."""

from __future__ import annotations

import io
import re

# os-release(5): the file to read, and the one to fall back to when it is absent
PATHS = ("/etc/os-release", "/usr/lib/os-release")

_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
_UNESCAPE = re.compile(r"\\([\\$\"`])")


def _value(raw):
    """One assignment's value as a shell would read it: os-release(5) allows double quotes (with
    backslash escapes for \\ $ " and `), single quotes, or a bare word."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return _UNESCAPE.sub(r"\1", raw[1:-1])
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    return _UNESCAPE.sub(r"\1", raw)


def parse(text):
    """os-release text → {KEY: value}; comments, blank lines and lines that are not an
    assignment are skipped (the format says so), the last assignment of a key wins."""
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            fields[match.group(1)] = _value(match.group(2))
    return fields


def ecosystem(fields):
    """The OSV ecosystem of the release these os-release fields describe, '' when unknown.

    - Debian: `Debian:<major of VERSION_ID>` (`Debian:12`; VERSION_ID is `12` on bookworm, point
      releases are not in it). A testing or unstable host has no VERSION_ID: it is
      `Debian:<VERSION_CODENAME>` (`Debian:trixie`), which no published record names, so only
      records that give no release apply to it; without a codename either it is plain `Debian`.
    - Ubuntu: `Ubuntu:<VERSION_ID>`, plus `:LTS` when VERSION says LTS (`Ubuntu:22.04:LTS`,
      `Ubuntu:24.10`).
    - Anything else (derivatives included: their archives are not Debian's or Ubuntu's) is ''."""
    distro = fields.get("ID", "").strip().lower()
    version_id = fields.get("VERSION_ID", "").strip()
    if distro == "debian":
        if version_id:
            return "Debian:%s" % version_id.split(".")[0]
        codename = fields.get("VERSION_CODENAME", "").strip().lower()
        return "Debian:%s" % codename if codename else "Debian"
    if distro == "ubuntu":
        if not version_id:
            return "Ubuntu"
        lts = re.search(r"\bLTS\b", fields.get("VERSION", ""))
        return "Ubuntu:%s%s" % (version_id, ":LTS" if lts else "")
    return ""


def describe(fields):
    """The `os` result of the scan: the fields Patchwave uses and the ecosystem."""
    return dict(
        id=fields.get("ID", ""),
        version_id=fields.get("VERSION_ID", ""),
        version_codename=fields.get("VERSION_CODENAME", ""),
        name=fields.get("NAME", ""),
        ecosystem=ecosystem(fields),
    )


def read(paths=None):
    """describe() of the first os-release file of `paths` (PATHS by default) that exists; every
    field empty (and the ecosystem unknown) when there is none or it cannot be read."""
    for path in PATHS if paths is None else paths:
        try:
            with io.open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except (IOError, OSError):
            continue
        return describe(parse(text))
    return describe({})
