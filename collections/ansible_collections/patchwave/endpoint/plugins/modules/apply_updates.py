#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apply_updates
short_description: Install exact package versions and prove they are installed
version_added: "0.1.0"
description:
  - Installs exactly the given C(name=version) list (never "whatever is latest"),
    non-interactively, keeping locally changed conffiles by default.
  - Before installing, waits for the dpkg lock (up to I(lock_timeout)) and repairs an
    interrupted dpkg with C(dpkg --configure -a).
  - Refuses to change held packages unless I(allow_held) is set.
  - Afterwards re-reads the installed versions and fails if any differs from what was asked,
    returning the package manager's output as evidence.
  - Safe to run with C(async) so that long installs survive a dropped connection.
options:
  packages:
    description: Exact versions to install, each C(name=version).
    type: list
    elements: str
    required: true
  allow_held:
    description: Also change packages that are held (C(apt-mark hold)).
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for the dpkg/apt locks before failing with the holder's pid and command.
    type: int
    default: 300
  conffile_policy:
    description:
      - C(keep_local) keeps conffiles the admin changed (C(--force-confdef --force-confold));
        C(use_new) installs the package's version.
    type: str
    choices: [keep_local, use_new]
    default: keep_local
  notify_message:
    description:
      - A message sent to logged-in users (C(wall)) just before the install, only when something
        will change. Nothing is sent when empty or when C(wall) is not installed.
    type: str
    default: ""
  notify_delay:
    description:
      - Seconds to wait after O(notify_message) was sent before the install starts (users get
        time to save their work). Only when something will change; C(0) for no wait.
    type: int
    default: 0
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_full
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Install the manifest's versions
  patchwave.endpoint.apply_updates:
    packages:
      - pw-libssl=1.0-2
  async: 3600
  poll: 10
"""

RETURN = r"""
packages:
  description: Per requested package, the version before and after.
  returned: always
  type: list
  elements: dict
  sample: [{name: pw-libssl, before: 1.0-1, after: 1.0-2, wanted: 1.0-2}]
reboot_required:
  description: Whether the host asks for a reboot afterwards, and why.
  returned: always
  type: dict
lock_waited:
  description: Seconds spent waiting for the dpkg/apt locks.
  returned: when an install ran
  type: float
notified:
  description: Whether logged-in users were sent O(notify_message).
  returned: when an install ran
  type: bool
repaired:
  description: Output of the C(dpkg --configure -a) repair, when dpkg had been interrupted.
  returned: when a repair ran
  type: dict
stdout:
  description: Output of the install, as evidence.
  returned: when an install ran
  type: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils import pkgmgr
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import PackageSpecError, parse_specs
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type="list", elements="str", required=True),
            allow_held=dict(type="bool", default=False),
            lock_timeout=dict(type="int", default=300),
            conffile_policy=dict(type="str", default="keep_local", choices=["keep_local", "use_new"]),
            notify_message=dict(type="str", default=""),
            notify_delay=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        wanted = parse_specs(params["packages"])
    except PackageSpecError as exc:
        module.fail_json(msg="packages: %s" % exc)
    manager = pkgmgr.for_host(module)
    result = Result(module, changed=False)
    with result.command_errors():
        # read and plan
        before = manager.installed_versions(list(wanted))
        changing = dict((n, v) for n, v in wanted.items() if before.get(n) != v)
        held = sorted(set(manager.held_packages()) & set(changing))
        if held and not params["allow_held"]:
            module.fail_json(msg="held packages would change: %s; release the hold or set allow_held" % ", ".join(held),
                             packages=entries(wanted, before, before))
        result.diff_versions(before, dict(before, **wanted))
        if not changing:
            result.success(packages=entries(wanted, before, before), reboot_required=manager.reboot_required())
        # check mode: report the plan
        if module.check_mode:
            result.success(changed=True, packages=entries(wanted, before, dict(before, **changing)),
                           reboot_required=manager.reboot_required())
        # apply
        result["lock_waited"] = manager.wait_for_lock(params["lock_timeout"])
        repaired = manager.repair_interrupted()
        if repaired:
            result["repaired"] = repaired
            if repaired["rc"] != 0:
                result.fail("%s was interrupted and `%s` could not repair it; nothing was installed"
                            % (manager.installer, manager.repair_command), dpkg=manager.health())
        result["notified"] = notify(module, params["notify_message"])
        if params["notify_delay"] > 0:
            time.sleep(params["notify_delay"])  # the message said when; keep to it
            result["notify_delay"] = params["notify_delay"]
        rc, out, err = manager.install(changing, allow_held=params["allow_held"], lock_timeout=params["lock_timeout"],
                                       conffile_policy=params["conffile_policy"])
        # re-read
        after = manager.installed_versions(list(wanted))
        result.update(stdout=out, stderr=err, rc=rc)
        result["changed"] = after != before
        result["packages"] = entries(wanted, before, after)
        result["reboot_required"] = manager.reboot_required()
        wrong = sorted(n for n, v in wanted.items() if after.get(n) != v)
        if rc != 0 or wrong:
            result.fail("install failed (rc=%s); not at the requested version: %s" % (rc, ", ".join(wrong) or "none"),
                        dpkg=manager.health())
    result.success()


def notify(module, message):
    """Tell logged-in users; a missing wall or a failed broadcast never blocks the patch."""
    wall = module.get_bin_path("wall")
    if not message or not wall:
        return False
    rc, _out, _err = module.run_command([wall, message], check_rc=False, environ_update={"LC_ALL": "C"})
    return rc == 0


def entries(wanted, before, after):
    return [dict(name=n, wanted=v, before=before.get(n), after=after.get(n)) for n, v in wanted.items()]


if __name__ == "__main__":
    main()
