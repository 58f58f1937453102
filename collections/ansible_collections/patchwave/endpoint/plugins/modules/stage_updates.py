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
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils import journal, pkgmgr, thinlink
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import (
    PackageSpecError,
    cycle_id_problem,
    parse_specs,
)
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result


def free_mb(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize // (1024 * 1024)


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
    result = Result(module)
    if cycle_id_problem(params["cycle_id"]):
        result.fail(cycle_id_problem(params["cycle_id"]))
    try:
        wanted = parse_specs(params["packages"])
    except PackageSpecError as exc:
        result.fail("packages: %s" % exc)

    if params["download_limit_kbps"] < 0:
        result.fail(thinlink.link_problem(params["download_limit_kbps"], None))
    manager = pkgmgr.for_host(module)
    manager.use_link(params["download_limit_kbps"], params["relay"])
    download = dict(bytes=0, seconds=0.0, limit_kbps=params["download_limit_kbps"], relay=params["relay"])
    cycle_dir = journal.cycle_dir(params["state_dir"], params["cycle_id"])
    rollback_dir = os.path.join(cycle_dir, "rollback")
    journal_path = journal.path(params["state_dir"], params["cycle_id"])
    with result.command_errors():
        # read and plan
        installed = manager.installed_versions(list(wanted))
        changing = dict((n, v) for n, v in wanted.items() if installed.get(n) != v)
        to_download = dict((n, v) for n, v in changing.items() if not manager.cached_package(n, v))

        record = journal.read(journal_path)
        saved = journal.saved(record)
        need_rollback = dict((n, installed[n]) for n in changing if n in installed and n not in saved)
        # packages the cycle will newly install: a rollback removes them again
        recorded_new = set(journal.new_packages(record))
        new_names = sorted(recorded_new | set(n for n in changing if n not in installed))

        download_sizes = manager.sizes(to_download)
        needed_mb = sum(download_sizes.values()) // (1024 * 1024)
        needed_mb += 2 * sum(manager.sizes(need_rollback).values()) // (1024 * 1024)
        for path in (manager.cache_dir, params["state_dir"] if os.path.isdir(params["state_dir"]) else "/var/lib"):
            available = free_mb(path)
            if available - needed_mb < params["min_free_mb"]:
                result.fail("not enough free space in %s: %d MiB free, %d MiB needed plus %d MiB reserve"
                            % (path, available, needed_mb, params["min_free_mb"]))

        journal_changes = bool(need_rollback) or set(new_names) != recorded_new
        # check mode: report the plan
        if module.check_mode:
            result.success(
                changed=bool(to_download or journal_changes),
                staged=[dict(name=n, version=v, file=manager.cached_package(n, v), downloaded=n in to_download)
                        for n, v in wanted.items()],
                rollback=[dict(name=n, version=e["before"], file=e.get("file"), method=e.get("method"))
                          for n, e in sorted(saved.items())]
                + [dict(name=n, version=v, file=None, method="planned") for n, v in sorted(need_rollback.items())],
                journal=journal_path, cycle_dir=cycle_dir, download=download)

        # apply
        if params["relay"] and (to_download or need_rollback):
            problem = thinlink.link_problem(0, params["relay"])
            if problem:
                result.fail(problem)
        if to_download:
            manager.wait_for_lock(params["lock_timeout"])
            started = time.monotonic()
            manager.download(to_download, lock_timeout=params["lock_timeout"])
            download.update(seconds=round(time.monotonic() - started, 2), bytes=sum(download_sizes.values()))
        # re-read: every file is the version asked for, as the signed index gives it
        staged = []
        entries = manager.index_entries(changing)
        for name, version in wanted.items():
            path = manager.cached_package(name, version)
            entry = entries.get(name)
            if name in changing:
                if entry is None:
                    result.fail("%s=%s is in none of the host's repositories" % (name, version))
                if not path and entry["uri"].startswith("file:"):
                    # the package manager uses file: packages in place and never copies them into its cache
                    path = manager.stage_local(entry, name, version)
                if not path:
                    result.fail("%s=%s is not in the package cache after download from %s"
                                % (name, version, entry["uri"]))
                problem = checksum_problem(path, entry)
                if problem:
                    os.unlink(path)
                    result.fail("%s=%s: %s; the file was removed from the cache" % (name, version, problem))
                got = manager.package_fields(path)
                if got != (name, version):
                    result.fail("downloaded %s is %s=%s, not the %s=%s asked for" % (path, got[0], got[1], name, version))
            staged.append(dict(name=name, version=version, file=path, downloaded=name in to_download,
                               source=entry["uri"] if entry else None,
                               changelog=manager.changelog(path, name, installed.get(name)) if path else None))
        add_sibling_changelogs(staged, manager.source_packages())

        if need_rollback:
            if not os.path.isdir(rollback_dir):
                os.makedirs(rollback_dir, 0o700)
            saved.update(manager.save_rollback(need_rollback, rollback_dir))
        changed = bool(to_download or journal_changes)
        if journal_changes or not os.path.exists(journal_path):
            journal.write(journal_path, journal.record_stage(record, params["cycle_id"], saved, new_names, wanted))
            changed = True
    rollback = [dict(name=n, version=e["before"], file=e["file"], method=e["method"]) for n, e in sorted(saved.items())]
    result.success(changed=changed, staged=staged, rollback=rollback, journal=journal_path, cycle_dir=cycle_dir,
                   download=download)


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


if __name__ == "__main__":
    main()
