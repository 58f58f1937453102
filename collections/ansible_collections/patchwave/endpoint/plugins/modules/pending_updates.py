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
    origin and suite (security pocket or regular), whether it is held and whether it is a new
    package pulled in by an upgrade.
  - Reports reboot-required signals, dpkg health and free space in the package cache.
  - Read-only. Does not need python3-apt.
options:
  update_cache:
    description:
      - Refresh the package lists (C(apt-get update)) before looking.
      - This changes only the lists, never an installed package, so it also runs in check mode.
    type: bool
    default: true
  query:
    description: Package names whose installed version to report in RV(installed) (to confirm a patch).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - patchwave.endpoint.attributes
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
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
  description: dpkg database health (C(dpkg --audit)).
  returned: always
  type: dict
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
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.apt import ARCHIVES, AptManager
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import NAME_RE, CommandError


def free_space_mb(path):
    stat = os.statvfs(path)
    return int(stat.f_bavail * stat.f_frsize // (1024 * 1024))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            update_cache=dict(type="bool", default=True),
            query=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    names = module.params["query"]
    bad = [n for n in names if not NAME_RE.match(n)]
    if bad:
        module.fail_json(msg="query: invalid package name(s): %s" % ", ".join(repr(n) for n in bad))
    manager = AptManager(module)
    try:
        if module.params["update_cache"]:
            manager.refresh()
        updates, removals = manager.pending_updates()
        result = dict(
            changed=False,
            updates=updates,
            removals=removals,
            reboot_required=manager.reboot_required(),
            dpkg=manager.health(),
            free_space_mb=free_space_mb(ARCHIVES),
            installed=manager.installed_versions(names) if names else {},
            package_manager=manager.name,
        )
    except CommandError as exc:
        module.fail_json(**exc.as_result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
