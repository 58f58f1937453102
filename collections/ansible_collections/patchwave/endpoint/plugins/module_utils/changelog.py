# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What an update fixes, in the words of its own Debian changelog.

Contract (the apt backend's ``changelog()`` calls from_deb for each package stage_updates stages,
which puts the result under the key ``changelog`` of that package's ``staged[]`` entry)::

    from_deb(module, deb_path, package, installed_version, compare=None) -> dict or None
    parse(text, installed_version, compare=None) -> dict

    {"urgency": "high",                       # highest of those entries: low < medium < high <
                                              #   emergency < critical; None when none is known
     "cves": ["CVE-2024-2511", ...],          # sorted, unique, mentioned in those entries
     "versions": ["3.0.13-1~deb12u1", ...]}   # those entries' versions, newest first

"Those entries" are the changelog entries newer than ``installed_version`` (reading stops at the
first entry that is not newer), or only the newest entry when ``installed_version`` is None (a new
package). ``compare(a, b)`` returns <0, 0 or >0 in dpkg's order; pass the backend's
``compare_versions``, or None for ``compare_versions`` below (dpkg's algorithm, no subprocess).

from_deb returns None when the .deb has no changelog of its own: many binary packages ship
/usr/share/doc/<package> as a symlink to a sibling's directory (take the changelog from another
binary of the same source then), and some ship none. It also returns None when dpkg-deb cannot
read the file. It streams ``dpkg-deb --fsys-tarfile`` (argv, no shell) through tarfile without
writing anything to disk, reads changelog.Debian.gz (plus changelog.Debian.<arch>.gz, which holds
a binNMU's entries, or the changelog.gz of a native package) and stops decompressing at
MAX_CHANGELOG_BYTES: only the oldest entries of an unusually long changelog are lost that way.
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import zlib

URGENCIES = ("low", "medium", "high", "emergency", "critical")
_RANK = dict((u, i) for i, u in enumerate(URGENCIES))

CVE_RE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
# debian/changelog header: "openssl (3.0.13-1~deb12u1) bookworm-security; urgency=medium"
HEADER_RE = re.compile(r"^(\w[-+0-9a-z.]*) \(([^() \t]+)\)((?:\s+[-+0-9a-z.]+)+)\s*;(.*)$", re.IGNORECASE)
# dpkg stops reading a changelog at these (old-format history, editor settings)
_END_RE = re.compile(r"^(?:Local variables:|Old Changelog:|;;\s*Local Variables:)", re.IGNORECASE)

MAX_CHANGELOG_BYTES = 8 * 1024 * 1024


# --- dpkg's version order, for hosts and tests that have no compare of their own ---------------

def _char_order(char):
    if char == "~":
        return -1
    if "a" <= char <= "z" or "A" <= char <= "Z":
        return ord(char)
    return ord(char) + 256


def _is_digit(text, index):
    return index < len(text) and "0" <= text[index] <= "9"


def _compare_part(left, right):
    """dpkg's verrevcmp: alternating runs of non-digits (by _char_order, '~' first, end of string
    next) and digits (numerically)."""
    i = j = 0
    while i < len(left) or j < len(right):
        while (i < len(left) and not _is_digit(left, i)) or (j < len(right) and not _is_digit(right, j)):
            a = _char_order(left[i]) if i < len(left) and not _is_digit(left, i) else 0
            b = _char_order(right[j]) if j < len(right) and not _is_digit(right, j) else 0
            if a != b:
                return a - b
            i += 1
            j += 1
        start_i, start_j = i, j
        while _is_digit(left, i):
            i += 1
        while _is_digit(right, j):
            j += 1
        a, b = int(left[start_i:i] or "0"), int(right[start_j:j] or "0")
        if a != b:
            return a - b
    return 0


def _split_version(version):
    epoch, colon, rest = version.partition(":")
    if not colon or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def compare_versions(left, right):
    """-1, 0 or 1 as `dpkg --compare-versions` orders the two versions (epoch, upstream, revision)."""
    le, lu, lr = _split_version(left)
    re_, ru, rr = _split_version(right)
    result = (le - re_) or _compare_part(lu, ru) or _compare_part(lr, rr)
    return (result > 0) - (result < 0)


# --- parsing ---------------------------------------------------------------------------------

def _urgency(keywords):
    """'urgency=medium, binary-only=yes' -> 'medium'; None for a missing or unknown word."""
    for item in keywords.split(","):
        key, _eq, value = item.partition("=")
        if key.strip().lower() == "urgency" and value.strip():
            word = value.split()[0].lower()
            return word if word in _RANK else None
    return None


def entries(text):
    """Every entry of a debian/changelog, newest first: [{'version', 'urgency', 'body'}]."""
    found = []
    for line in text.splitlines():
        if _END_RE.match(line):
            break
        header = HEADER_RE.match(line)
        if header:
            found.append({"version": header.group(2), "urgency": _urgency(header.group(4)), "body": []})
        elif found and not line.startswith(" -- "):
            found[-1]["body"].append(line)
    return found


def parse(text, installed_version, compare=None):
    """Summary of the entries newer than `installed_version` (see the module docstring)."""
    compare = compare or compare_versions
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    chosen = []
    # some changelogs leave out the package's epoch (libbpf's "0.3-2+deb11u1" of version 1:0.3-2+deb11u1):
    # an entry without one is read with the installed version's epoch
    epoch = installed_version.split(":", 1)[0] + ":" if installed_version and ":" in installed_version else ""
    for entry in entries(text):
        if installed_version is None:
            chosen.append(entry)
            break
        version = entry["version"] if ":" in entry["version"] else epoch + entry["version"]
        if compare(version, installed_version) <= 0:
            break
        chosen.append(entry)
    urgencies = [e["urgency"] for e in chosen if e["urgency"] is not None]
    cves = set()
    for entry in chosen:
        for line in entry["body"]:
            cves.update(CVE_RE.findall(line))
    return {
        "urgency": max(urgencies, key=lambda u: _RANK[u]) if urgencies else None,
        "cves": sorted(cves),
        "versions": [e["version"] for e in chosen],
    }


# --- reading it out of a .deb ----------------------------------------------------------------

def _gunzip(raw, limit):
    """Decompressed text of a gzip file, at most `limit` bytes (cut at the last whole line)."""
    try:
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, limit)
    except zlib.error:
        return None
    if len(data) >= limit:
        data = data[:data.rfind(b"\n") + 1]
    return data.decode("utf-8", "replace")


def read_from_tar(stream, package, limit=MAX_CHANGELOG_BYTES):
    """The changelog text of `package` from a data.tar stream (what `dpkg-deb --fsys-tarfile`
    writes), binNMU entries first; None when the package's doc directory is a symlink or holds
    no Debian changelog. Nothing is extracted: members are read in memory, up to `limit`."""
    doc = "usr/share/doc/%s" % package.split(":", 1)[0]
    binnmu = re.compile(r"^changelog\.Debian\.[a-z0-9-]+\.gz$")
    texts = {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = member.name
            while name.startswith("./"):
                name = name[2:]
            name = name.lstrip("/").rstrip("/")
            if name == doc and not member.isdir():
                return None  # a symlink to a sibling's doc directory: its changelog is not in here
            folder, _slash, base = name.rpartition("/")
            if folder != doc or not member.isfile():
                continue
            if base == "changelog.Debian.gz":
                kind = "debian"
            elif binnmu.match(base):
                kind = "binnmu"
            elif base == "changelog.gz":
                kind = "native"
            else:
                continue
            handle = tar.extractfile(member)
            text = _gunzip(handle.read(min(member.size, limit)), limit) if handle is not None else None
            if text is not None:
                texts[kind] = text
    if "debian" in texts:
        return texts.get("binnmu", "") + texts["debian"]
    native = texts.get("native")
    # a non-native package's changelog.gz is the upstream one, not in debian/changelog format
    if native is not None and any(HEADER_RE.match(line) for line in native.splitlines()[:5]):
        return texts.get("binnmu", "") + native
    return None


def read_deb(dpkg_deb, deb_path, package, limit=MAX_CHANGELOG_BYTES):
    """The changelog text inside `deb_path` (see read_from_tar), or None. dpkg-deb's output is
    streamed, never held whole in memory (a data.tar can be hundreds of MB), hence Popen rather
    than run_command."""
    proc = subprocess.Popen([dpkg_deb, "--fsys-tarfile", deb_path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, LC_ALL="C"))
    rc = None
    try:
        text = read_from_tar(proc.stdout, package, limit)
        if text is not None:
            proc.stdout.read()  # the tar's padding: dpkg-deb finishes, its exit status tells the rest
            rc = proc.wait()
    except (tarfile.TarError, OSError, EOFError):
        text = None
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()  # nothing more is needed from this .deb
        proc.wait()
    return text if rc == 0 else None


def from_deb(module, deb_path, package, installed_version, compare=None):
    """parse() of the changelog inside a .deb, or None when it has none of its own (module
    docstring)."""
    dpkg_deb = module.get_bin_path("dpkg-deb")
    if not dpkg_deb:
        return None
    text = read_deb(dpkg_deb, deb_path, package)
    if text is None:
        return None
    return parse(text, installed_version, compare)
