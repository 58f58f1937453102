#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stage_updates
short_description: Download exact package versions and save rollback material before a patch
version_added: "0.1.0"
description:
  - Given an exact C(name=version) list, checks free space first, downloads only those versions
    into the package cache and verifies that each downloaded file is the version asked for.
  - Works through every apt transport. For each package it asks apt where the file really comes
    from (C(apt-get --print-uris download)). C(http://), C(https://) and C(copy:) sources fill the
    package cache; a C(file:) source is used by apt in place, so the module copies that file into
    the cache itself. Each staged file is then checked against the SHA-256 or SHA-512 that the
    repository's signed index gives; a file that does not match is removed and the module fails.
  - Saves rollback material for every installed package that will change (the installed
    version's C(.deb) from the cache, the repository, or rebuilt with C(dpkg-repack)) and a
    JSON journal of before-versions and of the packages the cycle newly installs, in a per-cycle
    directory on the host (used by M(patchwave.endpoint.rollback_updates)).
  - Waits for the dpkg/apt locks (O(lock_timeout)) and fails naming the holder.
  - Idempotent; in check mode reports what would be downloaded and saved.
options:
  packages:
    description: Exact versions to stage, each C(name=version).
    type: list
    elements: str
    required: true
  cycle_id:
    description: Identifier of the patch cycle; names the directory that holds rollback material.
    type: str
    required: true
  min_free_mb:
    description: Free space (MiB) that must remain after staging, in the cache and in I(state_dir).
    type: int
    default: 100
  lock_timeout:
    description: Seconds to wait for the dpkg/apt lock.
    type: int
    default: 300
  download_limit_kbps:
    description:
      - For a host behind a thin link, download no faster than this many KB/s
        (apt's C(Acquire::http::Dl-Limit) and C(Acquire::https::Dl-Limit)). V(0) is no limit.
    type: int
    default: 0
  relay:
    description:
      - A caching apt proxy near the host (apt-cacher-ng, squid-deb-proxy), C(http://HOST[:PORT]/).
        Downloads from the host's C(http://) sources go through it (C(Acquire::http::Proxy)); apt still
        verifies every file against the repository's signed index, so the relay is not trusted.
      - Checked to accept connections before anything is downloaded; when it does not, the module fails
        naming it and nothing is staged.
    type: str
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_none
  - patchwave.endpoint.state
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Stage the manifest's packages
  patchwave.endpoint.stage_updates:
    cycle_id: "2026-11-29-001"
    packages:
      - pw-libssl=1.0-2
      - pw-tools=2.0-1
"""

RETURN = r"""
staged:
  description:
    - One entry per requested package, with the file apt will install, the URI apt takes it from
      (C(source)) and, for a package that changes, what its own Debian changelog says of the
      entries newer than the installed version (C(changelog) - urgency, CVE ids, versions - or
      null when the package ships no changelog and no other staged binary of its source does).
  returned: always
  type: list
  elements: dict
  sample: [{name: pw-libssl, version: 1.0-2, file: /var/cache/apt/archives/pw-libssl_1.0-2_all.deb, downloaded: true,
            source: "http://mirror.example/debian-security/pool/updates/main/p/pw-libssl/pw-libssl_1.0-2_all.deb",
            changelog: {urgency: high, cves: [CVE-2026-10001], versions: [1.0-2]}}]
rollback:
  description: Rollback material per package that will change, with how it was obtained.
  returned: always
  type: list
  elements: dict
  sample: [{name: pw-libssl, version: 1.0-1, file: /var/lib/patchwave/cycles/c1/rollback/pw-libssl_1.0-1_all.deb, method: cache}]
journal:
  description: Path of the cycle's journal on the host.
  returned: always
  type: str
cycle_dir:
  description: The per-cycle directory on the host.
  returned: always
  type: str
download:
  description: What this run downloaded, how long it took and over which link.
  returned: always
  type: dict
  sample: {bytes: 2097152, seconds: 10.6, limit_kbps: 200, relay: "http://relay.example:3142/"}
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from urllib.parse import unquote, urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils import changelog, thinlink
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.apt import ARCHIVES, AptManager, deb_filename
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import (
    CommandError,
    PackageSpecError,
    cycle_id_problem,
    parse_specs,
)


def free_mb(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize // (1024 * 1024)


def write_json(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".journal-")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.rename(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type="list", elements="str", required=True),
            cycle_id=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/patchwave"),
            min_free_mb=dict(type="int", default=100),
            lock_timeout=dict(type="int", default=300),
            **thinlink.MODULE_OPTIONS
        ),
        supports_check_mode=True,
    )
    params = module.params
    if cycle_id_problem(params["cycle_id"]):
        module.fail_json(msg=cycle_id_problem(params["cycle_id"]))
    try:
        wanted = parse_specs(params["packages"])
    except PackageSpecError as exc:
        module.fail_json(msg="packages: %s" % exc)

    if params["download_limit_kbps"] < 0:
        module.fail_json(msg=thinlink.link_problem(params["download_limit_kbps"], None))
    manager = AptManager(module)
    manager.use_link(params["download_limit_kbps"], params["relay"])
    download = dict(bytes=0, seconds=0.0, limit_kbps=params["download_limit_kbps"], relay=params["relay"])
    cycle_dir = os.path.join(params["state_dir"], "cycles", params["cycle_id"])
    rollback_dir = os.path.join(cycle_dir, "rollback")
    journal_path = os.path.join(cycle_dir, "journal.json")
    try:
        installed = manager.installed_versions(list(wanted))
        changing = dict((n, v) for n, v in wanted.items() if installed.get(n) != v)
        to_download = dict((n, v) for n, v in changing.items() if not manager.cached_deb(n, v))

        journal = {}
        if os.path.exists(journal_path):
            with open(journal_path) as handle:
                journal = json.load(handle)
        saved = journal.get("packages", {})
        need_rollback = dict((n, installed[n]) for n in changing if n in installed and n not in saved)
        # packages the cycle will newly install: a rollback removes them again
        recorded_new = set(journal.get("new", []))
        new_names = sorted(recorded_new | set(n for n in changing if n not in installed))

        download_sizes = manager.sizes(to_download)
        needed_mb = sum(download_sizes.values()) // (1024 * 1024)
        needed_mb += 2 * sum(manager.sizes(need_rollback).values()) // (1024 * 1024)
        for path in (ARCHIVES, params["state_dir"] if os.path.isdir(params["state_dir"]) else "/var/lib"):
            available = free_mb(path)
            if available - needed_mb < params["min_free_mb"]:
                module.fail_json(msg="not enough free space in %s: %d MiB free, %d MiB needed plus %d MiB reserve"
                                 % (path, available, needed_mb, params["min_free_mb"]))

        plan = dict(
            staged=[dict(name=n, version=v, file=manager.cached_deb(n, v), downloaded=n in to_download)
                    for n, v in wanted.items()],
            rollback=[dict(name=n, version=e["before"], file=e.get("file"), method=e.get("method"))
                      for n, e in sorted(saved.items())]
            + [dict(name=n, version=v, file=None, method="planned") for n, v in sorted(need_rollback.items())],
            journal=journal_path, cycle_dir=cycle_dir, download=download,
        )
        journal_changes = bool(need_rollback) or set(new_names) != recorded_new
        if module.check_mode:
            module.exit_json(changed=bool(to_download or journal_changes), **plan)

        if params["relay"] and (to_download or need_rollback):
            problem = thinlink.link_problem(0, params["relay"])
            if problem:
                module.fail_json(msg=problem)
        if to_download:
            manager.wait_for_lock(params["lock_timeout"])
            started = time.monotonic()
            manager.download(to_download, lock_timeout=params["lock_timeout"])
            download.update(seconds=round(time.monotonic() - started, 2), bytes=sum(download_sizes.values()))
        staged = []
        entries = manager.index_entries(changing)
        for name, version in wanted.items():
            path = manager.cached_deb(name, version)
            entry = entries.get(name)
            if name in changing:
                if entry is None:
                    module.fail_json(msg="%s=%s is in none of the host's repositories" % (name, version))
                if not path and entry["uri"].startswith("file:"):
                    # apt uses file: packages in place and never copies them into its cache
                    path = stage_local(entry, name, version)
                if not path:
                    module.fail_json(msg="%s=%s is not in the package cache after download from %s"
                                     % (name, version, entry["uri"]))
                problem = checksum_problem(path, entry)
                if problem:
                    os.unlink(path)
                    module.fail_json(msg="%s=%s: %s; the file was removed from the cache" % (name, version, problem))
                got = manager.deb_fields(path)
                if got != (name, version):
                    module.fail_json(msg="downloaded %s is %s=%s, not the %s=%s asked for" % (path, got[0], got[1], name, version))
            staged.append(dict(name=name, version=version, file=path, downloaded=name in to_download,
                               source=entry["uri"] if entry else None,
                               changelog=changelog.from_deb(module, path, name, installed.get(name)) if path else None))
        add_sibling_changelogs(staged, manager.source_packages())

        if need_rollback:
            if not os.path.isdir(rollback_dir):
                os.makedirs(rollback_dir, 0o700)
            saved.update(save_rollback(manager, need_rollback, rollback_dir))
        changed = bool(to_download or journal_changes)
        if journal_changes or not os.path.exists(journal_path):
            if not os.path.isdir(cycle_dir):
                os.makedirs(cycle_dir, 0o700)
            journal.update(cycle_id=params["cycle_id"], updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           packages=saved, new=new_names, requested=dict(journal.get("requested", {}), **wanted))
            write_json(journal_path, journal)
            changed = True
    except CommandError as exc:
        module.fail_json(**exc.as_result())
    rollback = [dict(name=n, version=e["before"], file=e["file"], method=e["method"]) for n, e in sorted(saved.items())]
    module.exit_json(changed=changed, staged=staged, rollback=rollback, journal=journal_path, cycle_dir=cycle_dir,
                     download=download)


def save_rollback(manager, versions, rollback_dir):
    """Keep the installed version's .deb of every package: copied from apt's cache, else fetched
    from the repositories (one apt-get call for all), else rebuilt from the system (dpkg-repack).
    Each file is checked to hold exactly that name=version."""
    saved, fetch = {}, {}
    for name, version in sorted(versions.items()):
        cached = manager.cached_deb(name, version)
        if cached:
            target = os.path.join(rollback_dir, os.path.basename(cached))
            shutil.copy2(cached, target)
            saved[name] = dict(before=version, file=target, method="cache")
        else:
            fetch[name] = version
    if fetch and not manager.download_to(fetch, rollback_dir):
        # one of them is gone from the repositories: fetch one by one, repack what is missing
        for name, version in sorted(fetch.items()):
            manager.download_to({name: version}, rollback_dir)
    for name, version in sorted(fetch.items()):
        found = find_deb(manager, rollback_dir, name, version)
        method = "repository"
        if not found:
            before = set(os.listdir(rollback_dir))
            manager.repack(name, rollback_dir)
            new = sorted(set(os.listdir(rollback_dir)) - before)
            if not new:
                raise CommandError("dpkg-repack produced no package for %s=%s" % (name, version))
            found, method = os.path.join(rollback_dir, new[0]), "dpkg-repack"
        saved[name] = dict(before=version, file=found, method=method)
    for name, entry in saved.items():
        got = manager.deb_fields(entry["file"])
        if got != (name, entry["before"]):
            raise CommandError("rollback file %s holds %s=%s, not %s=%s" % (entry["file"], got[0], got[1], name, entry["before"]))
    return saved


def add_sibling_changelogs(staged, sources):
    """A binary package whose /usr/share/doc is a symlink to a sibling's has no changelog of its
    own: it gets the changelog of another staged binary of the same source package."""
    by_source = {}
    for item in staged:
        if item["changelog"] is not None:
            by_source.setdefault(sources.get(item["name"], item["name"]), item["changelog"])
    for item in staged:
        if item["changelog"] is None and item["file"]:
            item["changelog"] = by_source.get(sources.get(item["name"], item["name"]))


def stage_local(entry, name, version):
    """Copy a `file:` repository's package into apt's cache under the name apt gives it there
    (epoch as %3a), so the window only installs even if the repository's mount is gone by then."""
    source = unquote(urlsplit(entry["uri"]).path)
    arch = entry["filename"].rsplit("_", 1)[-1][:-len(".deb")]
    target = os.path.join(ARCHIVES, deb_filename(name, version, arch))
    fd, tmp = tempfile.mkstemp(dir=os.path.join(ARCHIVES, "partial"), prefix=".patchwave-")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)
    except (IOError, OSError):
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def checksum_problem(path, entry):
    """None when `path` has the checksum the repository's signed index gives, else why not."""
    kind, _sep, expected = entry["hash"].partition(":")
    if kind not in ("sha256", "sha512"):
        return "the repository's index gives no SHA-256 or SHA-512 for it (only %s)" % kind
    digest = hashlib.new(kind)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        return "%s does not match the index's %s (%s...)" % (path, kind.upper(), expected[:16])
    return None


def find_deb(manager, directory, name, version):
    """The .deb of name=version in `directory`, whatever apt named it: `apt-get download` writes
    an epoch as %3a from an http source, but keeps the pool's name (no epoch) from a file: one."""
    for candidate in sorted(f for f in os.listdir(directory) if f.startswith(name + "_") and f.endswith(".deb")):
        path = os.path.join(directory, candidate)
        if manager.deb_fields(path) == (name, version):
            return path
    return None


if __name__ == "__main__":
    main()
