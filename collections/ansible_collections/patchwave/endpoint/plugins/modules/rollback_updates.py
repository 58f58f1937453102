#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback_updates
short_description: Put a host back at the exact package versions it had before a patch cycle
version_added: "0.1.0"
description:
  - Reads the cycle's journal written by M(patchwave.endpoint.stage_updates), reinstalls the
    saved C(.deb) of every package whose version changed (downgrades included) and removes the
    packages the cycle newly installed, all in one C(apt-get install --allow-downgrades) call, so
    apt orders the downgrades as dpkg needs them (Pre-Depends and exact-version Depends between the
    binary packages of one source, essential packages).
  - Plans first. apt simulates the whole rollback, and when that is not exactly the versions from
    before the cycle (apt cannot do it, or would leave a package at another version, or would
    install or remove anything else) the module fails saying so and changes nothing.
  - When the real run still fails, it never leaves the host half-downgraded. It finishes what dpkg
    left unconfigured and, if apt's dependencies are still broken, reinstalls the versions the
    cycle had installed; the result says whether the host ended consistent.
  - Works on a host whose dpkg was left half-configured by a failing maintainer script, and
    after a reboot (the journal and the saved packages live on disk).
  - Verifies the result by re-reading the installed versions, C(dpkg --audit) and C(apt-get check).
  - Idempotent; check mode reports what would be restored and removed.
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_full
  - patchwave.endpoint.state
options:
  cycle_id:
    description: The patch cycle to roll back.
    type: str
    required: true
  lock_timeout:
    description: Seconds to wait for the dpkg/apt locks before failing with the holder's pid and command.
    type: int
    default: 300
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Roll back the cycle
  patchwave.endpoint.rollback_updates:
    cycle_id: "2026-11-29-001"
"""

RETURN = r"""
restored:
  description: Packages reinstalled at their version before the cycle.
  returned: always
  type: list
  elements: dict
  sample: [{name: pw-libssl, from: 1.0-2, to: 1.0-1, file: /var/lib/patchwave/cycles/c1/rollback/pw-libssl_1.0-1_all.deb}]
removed:
  description: Packages the cycle had newly installed, now removed.
  returned: always
  type: list
  elements: str
dpkg:
  description: >-
    The host's package health after the rollback: C(clean) when C(dpkg --audit) is empty and
    C(apt-get check) passes, with C(output) (dpkg's) and C(apt_check).
  returned: always
  type: dict
plan:
  description: What apt's simulation of the rollback would install and remove.
  returned: when something is to be restored or removed
  type: dict
  sample: {install: [libpam-modules-bin=1.5.2-6+deb12u1, libpam-modules=1.5.2-6+deb12u1], remove: []}
recovery:
  description: What was done after a failed rollback to leave the host consistent, and whether it is.
  returned: when the rollback failed
  type: dict
stdout:
  description: apt and dpkg output, as evidence.
  returned: when apt ran
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils import journal, pkgmgr
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import cycle_id_problem, tail
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cycle_id=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/patchwave"),
            lock_timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if cycle_id_problem(params["cycle_id"]):
        module.fail_json(msg=cycle_id_problem(params["cycle_id"]))
    journal_path = journal.path(params["state_dir"], params["cycle_id"])
    if not os.path.exists(journal_path):
        module.fail_json(msg="no journal for cycle %s at %s: was the cycle staged on this host?"
                         % (params["cycle_id"], journal_path))
    record = journal.read(journal_path)
    saved = journal.saved(record)
    new = journal.new_packages(record)
    manager = pkgmgr.for_host(module)
    result = Result(module, changed=False, restored=[], removed=[])
    with result.command_errors():
        # read and plan
        current = manager.installed_versions(sorted(set(saved) | set(new)))
        restore = dict((n, e) for n, e in sorted(saved.items()) if current.get(n) != e["before"])
        remove = sorted(n for n in new if n in current)
        missing = [e["file"] for e in restore.values() if not os.path.exists(e["file"])]
        if missing:
            module.fail_json(msg="rollback material is missing: %s" % ", ".join(missing))
        after_lines = dict((n, v) for n, v in current.items() if n not in remove)
        after_lines.update((n, e["before"]) for n, e in restore.items())
        result.diff_versions(current, after_lines)
        result["restored"] = [dict(name=n, to=e["before"], file=e["file"], **{"from": current.get(n)})
                              for n, e in restore.items()]
        result["removed"] = remove
        if not restore and not remove:
            result["dpkg"] = manager.health()
            if not record.get("rolled_back") and result["dpkg"]["clean"] and not module.check_mode:
                # every package is already back (an earlier run restored them, then failed late)
                journal.mark_rolled_back(record, journal_path)
                result["changed"] = True
            result.success()
        if not module.check_mode:
            # a package manager killed mid-run leaves its database half-done, which it then refuses to work
            # on; the simulation skips that check
            manager.wait_for_lock(params["lock_timeout"])
            result["repaired"] = manager.repair_interrupted()
        problem, plan = plan_problem(manager, restore, remove, params["lock_timeout"])
        result["plan"] = plan
        if problem:
            # nothing was touched: the host stays at the cycle's versions, consistent
            result.fail("an exact rollback is impossible, so nothing was changed: %s" % problem, dpkg=manager.health())
        # check mode: report the plan
        if module.check_mode:
            result.success(changed=True, dpkg=manager.health())

        # apply
        manager.wait_for_lock(params["lock_timeout"])
        files = [e["file"] for e in restore.values()]
        rc, out, err = manager.restore(files, remove, lock_timeout=params["lock_timeout"])
        result["stdout"] = out + err
        # re-read
        now = manager.installed_versions(sorted(set(saved) | set(new)))
        result["changed"] = now != current
        result["dpkg"] = manager.health()
        wrong = [n for n, e in saved.items() if now.get(n) != e["before"]] + [n for n in new if n in now]
        if rc != 0 or wrong or not result["dpkg"]["clean"]:
            result["recovery"] = recover(manager, record, current, params["lock_timeout"])
            result.fail("rollback failed (%s rc=%s; not restored: %s; %s); %s"
                        % (manager.front_end, rc, ", ".join(sorted(wrong)) or "none",
                           manager.health_text(result["dpkg"]), result["recovery"]["summary"]))
        journal.mark_rolled_back(record, journal_path)
    result.success()


def plan_problem(manager, restore, remove, lock_timeout):
    """What the package manager would do for the rollback (a simulation, which changes nothing),
    and why that is not an exact rollback: it cannot do it, would leave a package at another
    version, or would install or remove anything besides what the cycle changed. (None, plan)
    when it is exact."""
    files = [e["file"] for e in restore.values()]
    rc, out, err, installs, removals = manager.restore_plan(files, remove, lock_timeout=lock_timeout)
    plan = dict(install=["%s=%s" % (n, v) for n, v in installs], remove=list(removals))
    if rc != 0:
        return "%s cannot plan it (rc=%s): %s" % (manager.name, rc, tail(err or out)), plan
    planned = dict(installs)
    problems = []
    for name, entry in sorted(restore.items()):
        if planned.get(name) != entry["before"]:
            problems.append("%s would be at %s, not %s" % (name, planned.get(name) or "its current version", entry["before"]))
    extra = sorted(set(planned) - set(restore))
    if extra:
        problems.append("%s would also install %s" % (manager.name, ", ".join("%s=%s" % (n, planned[n]) for n in extra)))
    removed = set(removals)
    if set(remove) - removed:
        problems.append("%s would stay installed" % ", ".join(sorted(set(remove) - removed)))
    if removed - set(remove):
        problems.append("%s would also remove %s" % (manager.name, ", ".join(sorted(removed - set(remove)))))
    return ("; ".join(problems) or None), plan


def recover(manager, record, versions_before, lock_timeout):
    """After a failed rollback, never leave the host half-downgraded: finish what the package
    manager left unconfigured, and when its dependencies are still broken, put the packages back
    at the versions the cycle had installed (they are what the host ran before the rollback started)."""
    steps = []
    repaired = manager.repair_interrupted()
    if repaired:
        steps.append("%s (rc=%s)" % (manager.repair_command, repaired["rc"]))
    health = manager.health()
    if health["clean"]:
        return dict(summary="the host is consistent (%s)" % manager.health_text(health), steps=steps,
                    consistent=True)
    forward = dict((n, v) for n, v in versions_before.items() if n in journal.saved(record))
    rc, out, err = manager.install(forward, allow_held=True, lock_timeout=lock_timeout)
    steps.append("reinstalled the cycle's versions of %d package(s) (rc=%s)" % (len(forward), rc))
    health = manager.health()
    if health["clean"]:
        return dict(summary="the host was put back at the cycle's versions and is consistent", steps=steps,
                    consistent=True)
    return dict(summary="the host is NOT consistent: %s; repair it by hand (%s)"
                % (manager.health_text(health), manager.repair_hint),
                steps=steps, consistent=False, output=tail(out + err))


if __name__ == "__main__":
    main()
