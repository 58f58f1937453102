#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pending_updates
short_description: Report every pending package update of a host in one call
version_added: "0.1.0"
description:
  - Lists every upgradable package with installed and candidate version, source package,
    origin and suite (security pocket or regular), whether it is held, which new packages it
    needs and which packages it would remove, and for a new package which upgrades need it.
  - Reports reboot-required signals (the reboot-required file and its package list, a newer
    installed kernel than the running one, needrestart when present) and which one fired,
    dpkg health (C(dpkg --audit)), who holds the dpkg/apt locks, and free space in the package cache.
  - Reports the host's OS release from its own C(/etc/os-release) (else C(/usr/lib/os-release)) with
    the OSV ecosystem that names it (C(Debian:12), C(Ubuntu:22.04:LTS)), which decides which
    release's fixed version of an advisory applies to the host.
  - With O(expect), it also confirms a patch and reports one truthful end state for the host,
    including the processes that still run code the update replaced.
  - Read-only. Does not need python3-apt; every command runs with C(LC_ALL=C).
options:
  update_cache:
    description:
      - Refresh the package lists (C(apt-get update)) before looking.
      - This changes only the lists, never an installed package, so it also runs in check mode.
    type: bool
    default: true
  download_limit_kbps:
    description:
      - For a host behind a thin link, refresh the lists no faster than this many KB/s
        (apt's C(Acquire::http::Dl-Limit)). V(0) is no limit. Only with O(update_cache).
    type: int
    default: 0
  relay:
    description:
      - A caching apt proxy near the host, C(http://HOST[:PORT]/), that the refresh of the host's
        C(http://) sources goes through. Checked to accept connections first; when it does not, the
        module fails naming it. Only with O(update_cache).
    type: str
  query:
    description: Package names whose installed version to report in RV(installed) (to confirm a patch).
    type: list
    elements: str
    default: []
  expect:
    description:
      - The C(name=version) list a patch was meant to install; when given, RV(confirmation)
        reports the host's end state. An empty list means the host had nothing approved.
    type: list
    elements: str
  cycle_id:
    description: Patch cycle whose journal tells whether the host was rolled back (with O(expect)).
    type: str
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_none
  - patchwave.endpoint.state
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Scan for pending updates
  patchwave.endpoint.pending_updates:
  register: scan

- name: Scan without refreshing the lists
  patchwave.endpoint.pending_updates:
    update_cache: false
"""

RETURN = r"""
updates:
  description: Pending updates, sorted by name.
  returned: always
  type: list
  elements: dict
  sample:
    - name: pw-libssl
      installed: 1.0-1
      candidate: 1.0-2
      source: pw-libssl
      origins: [{label: Debian-Security, suite: bookworm-security}]
      security: true
      held: false
      new_install: false
      needs_new_packages: false
      new_packages: []
      removes: []
      required_by: []
removals:
  description: Packages a full upgrade would remove.
  returned: always
  type: list
  elements: dict
reboot_required:
  description: Whether the host asks for a reboot, which signals fired and for which packages.
  returned: always
  type: dict
dpkg:
  description: dpkg database health (C(dpkg --audit)) and the processes holding dpkg/apt locks.
  returned: always
  type: dict
  sample: {clean: true, output: "", lock_holders: [{pid: 4242, command: "apt-get install foo", file: /var/lib/dpkg/lock-frontend}]}
confirmation:
  description: The host's end state against O(expect)
    (patched, patched-pending-reboot, patched-pending-restart, partially-patched, failed, rolled-back, excluded).
    C(patched-pending-restart) means every package is at its approved version and no reboot is
    pending, but processes still run code the update replaced (see RV(restart_required)).
  returned: when O(expect) is given
  type: dict
  sample: {state: patched, detail: "all 2 package(s) at the approved version", packages: []}
restart_required:
  description:
    - Processes still running code that was replaced on disk (an executable or a shared object
      they map was deleted or replaced), and the services to restart for them (needrestart's list
      is used as well when it is installed). PID 1 is flagged with C(pid1); its service is listed
      but restarting it is a reboot.
  returned: when O(expect) is given
  type: dict
  contains:
    processes:
      description: One entry per stale process, sorted by pid.
      type: list
      elements: dict
      returned: always
    services:
      description: Sorted service names (systemd units, or the name of the pid file in C(/run)).
      type: list
      elements: str
      returned: always
  sample:
    processes:
      - {pid: 812, command: openssl, exe: /usr/bin/openssl, pid1: false, service: pw-tls, pidfile: /run/pw-tls.pid,
         files: [/usr/lib/x86_64-linux-gnu/libcrypto.so.3, /usr/lib/x86_64-linux-gnu/libssl.so.3]}
    services: [pw-tls]
free_space_mb:
  description: Free space where packages are downloaded, in MiB.
  returned: always
  type: int
installed:
  description: Installed version of each package named in O(query); absent ones are left out.
  returned: always
  type: dict
  sample: {pw-libssl: 1.0-2}
package_manager:
  description: The backend that answered.
  returned: always
  type: str
  sample: apt
os:
  description:
    - The host's OS release as its os-release file gives it (C(ID), C(VERSION_ID), C(VERSION_CODENAME),
      C(NAME)), each empty when absent, and its OSV ecosystem.
    - RV(os.ecosystem) is C(Debian:<major VERSION_ID>) (C(Debian:12)); a Debian testing or unstable
      host, which has no VERSION_ID, is C(Debian:<codename>) (C(Debian:trixie)), or C(Debian) without
      a codename. Ubuntu is C(Ubuntu:<VERSION_ID>), with C(:LTS) when VERSION says LTS
      (C(Ubuntu:22.04:LTS)). Any other distribution, or no os-release file, is an empty string.
  returned: always
  type: dict
  contains:
    id:
      description: C(ID), lower case by the format's rules (C(debian), C(ubuntu)).
      type: str
      returned: always
    version_id:
      description: C(VERSION_ID) (C(12), C(22.04)); empty on Debian testing and unstable.
      type: str
      returned: always
    version_codename:
      description: C(VERSION_CODENAME) (C(bookworm), C(jammy)).
      type: str
      returned: always
    name:
      description: C(NAME) (C(Debian GNU/Linux), C(Ubuntu)).
      type: str
      returned: always
    ecosystem:
      description: The OSV ecosystem of the release; empty when unknown.
      type: str
      returned: always
  sample: {id: debian, version_id: "12", version_codename: bookworm, name: Debian GNU/Linux, ecosystem: "Debian:12"}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils import journal, osrelease, pkgmgr, restarts, thinlink
from ansible_collections.patchwave.endpoint.plugins.module_utils.endstate import end_state
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import (
    NAME_RE,
    CommandError,
    PackageSpecError,
    cycle_id_problem,
    parse_specs,
)
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result


def free_space_mb(path):
    stat = os.statvfs(path)
    return int(stat.f_bavail * stat.f_frsize // (1024 * 1024))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            update_cache=dict(type="bool", default=True),
            query=dict(type="list", elements="str", default=[]),
            expect=dict(type="list", elements="str"),
            cycle_id=dict(type="str"),
            state_dir=dict(type="path", default="/var/lib/patchwave"),
            **thinlink.MODULE_OPTIONS
        ),
        supports_check_mode=True,
    )
    result = Result(module)
    names = module.params["query"]
    bad = [n for n in names if not NAME_RE.match(n)]
    if bad:
        result.fail("query: invalid package name(s): %s" % ", ".join(repr(n) for n in bad))
    expected = None
    if module.params["expect"] is not None:
        try:
            expected = parse_specs(module.params["expect"])
        except PackageSpecError as exc:
            result.fail("expect: %s" % exc)
        names = sorted(set(names) | set(expected))
    cycle_id = module.params["cycle_id"]
    if cycle_id is not None and cycle_id_problem(cycle_id):
        result.fail(cycle_id_problem(cycle_id))
    manager = pkgmgr.for_host(module)
    # read-only: the same in check mode (refreshing the lists changes no installed package)
    with result.command_errors():
        if module.params["update_cache"]:
            problem = thinlink.link_problem(module.params["download_limit_kbps"], module.params["relay"])
            if problem:
                result.fail(problem)
            manager.use_link(module.params["download_limit_kbps"], module.params["relay"])
            manager.refresh()
        apt_error = None
        try:
            updates, removals = manager.pending_updates()
        except CommandError as exc:
            if expected is None:
                raise
            # a confirm rescan still records what is installed when the package manager cannot plan
            # (broken dependencies)
            updates, removals, apt_error = [], [], exc.as_result()
        dpkg = manager.health()
        dpkg["lock_holders"] = manager.lock_holders()
        reboot = manager.reboot_required()
        installed = manager.installed_versions(names) if names else {}
        scan = dict(
            changed=False,
            updates=updates,
            removals=removals,
            reboot_required=reboot,
            dpkg=dpkg,
            free_space_mb=free_space_mb(manager.cache_dir),
            installed=installed,
            package_manager=manager.name,
            os=osrelease.read(),
        )
        if expected is not None:
            scan.update(confirm(manager, expected, installed, reboot, dpkg, module.params["state_dir"], cycle_id))
            if apt_error:
                scan["apt_error"] = apt_error
    result.success(**scan)


def confirm(manager, expected, installed, reboot, health, state_dir, cycle_id):
    """The confirm rescan's keys: the host's end state against `expected`, and what still runs
    the code the update replaced (patched on disk is not yet patched in memory)."""
    rolled_back = journal.rollback_record(state_dir, cycle_id) if cycle_id else None
    stale = restarts.stale_processes()
    plan = restarts.restart_plan(stale, reboot.get("details", {}).get("needrestart", {}).get("services"),
                                 restarts.pid1_services())
    state, detail, packages = end_state(expected, installed, reboot["required"], rolled_back,
                                        restarts.stale_names(plan))
    if not health["clean"]:
        check, broken = manager.health_problem(health)
        state, detail = "failed", "%s, but the host's packages are broken (%s): %s" % (
            detail, check, (broken.strip().splitlines() or ["(no output)"])[-1])
    return dict(restart_required=dict(processes=stale, services=restarts.needing_restart(plan)),
                confirmation=dict(state=state, detail=detail, packages=packages))


if __name__ == "__main__":
    main()
