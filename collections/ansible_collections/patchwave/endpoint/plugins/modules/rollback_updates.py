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
    packages the cycle newly installed.
  - Works on a host whose dpkg was left half-configured by a failing maintainer script, and
    after a reboot (the journal and the saved packages live on disk).
  - Verifies the result by re-reading the installed versions and C(dpkg --audit).
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
  description: dpkg health after the rollback.
  returned: always
  type: dict
stdout:
  description: dpkg output, as evidence.
  returned: when dpkg ran
  type: str
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.apt import AptManager
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import (
    CommandError,
    cycle_id_problem,
    version_lines,
)


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
    journal_path = os.path.join(params["state_dir"], "cycles", params["cycle_id"], "journal.json")
    if not os.path.exists(journal_path):
        module.fail_json(msg="no journal for cycle %s at %s: was the cycle staged on this host?"
                         % (params["cycle_id"], journal_path))
    with open(journal_path) as handle:
        journal = json.load(handle)
    saved = journal.get("packages", {})
    new = journal.get("new", [])
    manager = AptManager(module)
    result = dict(changed=False, restored=[], removed=[])
    try:
        current = manager.installed_versions(sorted(set(saved) | set(new)))
        restore = dict((n, e) for n, e in sorted(saved.items()) if current.get(n) != e["before"])
        remove = sorted(n for n in new if n in current)
        missing = [e["file"] for e in restore.values() if not os.path.exists(e["file"])]
        if missing:
            module.fail_json(msg="rollback material is missing: %s" % ", ".join(missing))
        before_lines = dict(current)
        after_lines = dict((n, v) for n, v in current.items() if n not in remove)
        after_lines.update((n, e["before"]) for n, e in restore.items())
        result["diff"] = dict(before=version_lines(before_lines), after=version_lines(after_lines))
        result["restored"] = [dict(name=n, to=e["before"], file=e["file"], **{"from": current.get(n)})
                              for n, e in restore.items()]
        result["removed"] = remove
        if not restore and not remove:
            result["dpkg"] = manager.health()
            module.exit_json(**result)
        if module.check_mode:
            result["changed"] = True
            result["dpkg"] = manager.health()
            module.exit_json(**result)

        manager.wait_for_lock(params["lock_timeout"])
        outputs = []
        if restore:
            rc, out, err = manager.install_files([e["file"] for e in restore.values()])
            outputs.append(out + err)
            if rc != 0:
                module.fail_json(msg="dpkg could not reinstall the saved packages (rc=%s)" % rc, stdout="".join(outputs),
                                 dpkg=manager.health(), **result)
        if remove:
            rc, out, err = manager.remove(remove)
            outputs.append(out + err)
            if rc != 0:
                module.fail_json(msg="dpkg could not remove the packages the cycle installed (rc=%s)" % rc,
                                 stdout="".join(outputs), dpkg=manager.health(), **result)
        result["stdout"] = "".join(outputs)
        now = manager.installed_versions(sorted(set(saved) | set(new)))
        result["changed"] = now != current
        result["dpkg"] = manager.health()
        wrong = [n for n, e in saved.items() if now.get(n) != e["before"]] + [n for n in new if n in now]
        if wrong or not result["dpkg"]["clean"]:
            health = "clean" if result["dpkg"]["clean"] else "unhealthy"
            module.fail_json(msg="rollback incomplete: %s; dpkg %s" % (", ".join(sorted(wrong)) or "versions ok", health),
                             **result)
        journal["rolled_back"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = journal_path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(journal, handle, indent=2, sort_keys=True)
        os.rename(tmp, journal_path)
    except CommandError as exc:
        module.fail_json(**dict(exc.as_result(), **result))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
