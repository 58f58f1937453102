#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: remediate_baseline
short_description: Fix failing baseline rules on a host, without locking anyone out
version_added: "0.2.0"
description:
  - Plans every change for the given rules first (files with their text before and after,
    modes and owners, commands), then applies them. In check mode it only reports the plan,
    with a diff in diff mode. A second run changes nothing (each remediation sets a state).
  - Remediation types are file_mode, config_value, line, file_absent, kernel_module, sysctl
    (one drop-in file plus the running value), sshd_option (one drop-in file that sshd reads
    first), package_absent and service_disabled. See docs/baselines.md.
  - Lock-out guards. sshd settings that would shut out the connection user (AllowUsers,
    DenyUsers, AllowGroups, DenyGroups, PubkeyAuthentication no, PermitRootLogin no for root)
    or change how the connection works (Port, ListenAddress, AuthenticationMethods,
    AuthorizedKeysFile, ForceCommand, ChrootDirectory) are refused. The new sshd configuration
    must pass C(sshd -t) and C(sshd -T -C user=...) must still let the connection user in
    before sshd is reloaded; sshd must accept connections after the reload, or the old
    configuration is put back. Packages and units the connection needs (openssh-server, sudo,
    python3, ssh.service, ...) are never removed or disabled; the connection user's SSH keys
    are never touched; /etc/sudoers is never edited and drop-ins in /etc/sudoers.d must pass
    C(visudo -c).
  - Every file is backed up under O(state_dir)C(/remediation/)O(batch) before it changes.
options:
  rules:
    description:
      - The failing rules to fix, each with C(id), C(remediation) and C(check) (the rule's check,
        which file_mode remediations take their paths, owner, group and mode from).
    type: list
    elements: dict
    required: true
  connection_user:
    description: The user Ansible connects as, whom no change may lock out (default C(SUDO_USER) of the become).
    type: str
  batch:
    description: Names the backup directory (letters, digits, dot, dash, underscore).
    type: str
    required: true
  state_dir:
    description: Where Patchwave keeps its state on the host.
    type: path
    default: /var/lib/patchwave
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_full
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Show what the remediation would change
  patchwave.endpoint.remediate_baseline:
    batch: "{{ patchwave_batch }}"
    rules: "{{ (lookup('ansible.builtin.file', 'fixes.json') | from_json).hosts[inventory_hostname].rules }}"
    connection_user: "{{ ansible_user }}"
  check_mode: true
  diff: true
  become: true
"""

RETURN = r"""
results:
  description: Per rule what was (or would be) done.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The rule id.
      type: str
    status:
      description: C(changed) (or would change in check mode), C(ok) (nothing to do), C(refused) (a guard said no) or C(error).
      type: str
    actions:
      description: What was (or would be) done, one line per change.
      type: list
      elements: str
    message:
      description: Why it was refused, or what went wrong.
      type: str
  sample: [{"id": "sshd-x11forwarding", "status": "changed", "actions": ["write /etc/ssh/sshd_config.d/00-patchwave.conf"], "message": ""}]
sshd_reloaded:
  description: Whether sshd was reloaded (after its configuration passed the checks).
  returned: always
  type: bool
backup_dir:
  description: Where the files changed were saved first.
  returned: always
  type: str
"""

import os
import re
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.fixes import (
    SSHD_DROP_IN, SYSCTL_DROP_IN, Applier, Planner)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type="list", elements="dict", required=True),
            connection_user=dict(type="str"),
            batch=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/patchwave"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not re.match(r"^[A-Za-z0-9._-]{1,64}$", params["batch"]):
        module.fail_json(msg="batch %r: use letters, digits, dot, dash, underscore" % params["batch"])
    user = params["connection_user"] or os.environ.get("SUDO_USER") or os.environ.get("USER") or "root"
    for index, rule in enumerate(params["rules"]):
        if not isinstance(rule.get("remediation"), dict) or not rule.get("id"):
            module.fail_json(msg="rules[%d] needs an id and a remediation" % index)

    def run(argv, timeout):
        env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout,
                              check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    planner = Planner(run, user)
    for rule in params["rules"]:
        planner.plan(rule)
    changes = planner.finish()  # sshd's new configuration is validated here, before anything is written
    backup_dir = os.path.join(params["state_dir"], "remediation", params["batch"])
    by_rule = {}
    for change in changes:
        for rid in change.rule.split(","):
            by_rule.setdefault(rid, []).append(change)
    results = {}
    for rule in params["rules"]:
        rid = rule["id"]
        if rid in planner.refused:
            results[rid] = dict(id=rid, status="refused", actions=[], message=planner.refused[rid])
        else:
            actions = [c.describe() for c in by_rule.get(rid, [])]
            results[rid] = dict(id=rid, status="changed" if actions else "ok", actions=actions, message="")
    output = dict(changed=bool(changes), sshd_reloaded=False, backup_dir=backup_dir)
    diffs = [d for d in (c.diff() for c in changes) if d]
    if module._diff:
        output["diff"] = diffs
    if module.check_mode or not changes:
        module.exit_json(results=[results[r["id"]] for r in params["rules"]], **output)

    applier = Applier(run, user, backup_dir)
    sshd_change = None
    applied = False
    for change in changes:
        if change.path == SSHD_DROP_IN:
            sshd_change = change
            continue
        try:
            applier.apply(change)
            applied = True
        except (IOError, OSError, RuntimeError, KeyError) as exc:
            for rid in change.rule.split(","):
                results[rid].update(status="error", message=str(exc))
    for key, (value, rid) in sorted(planner.sysctl.items()):
        rc, out, err = run(["sysctl", "-w", "%s=%s" % (key, value)], 30)
        if rc != 0:
            note = "persisted in %s; the running value was not changed: %s" % (SYSCTL_DROP_IN, (err or out).strip())
            results[rid]["message"] = note
    if sshd_change is not None:
        # the new configuration already passed sshd -t and the connection user's sshd -T -C
        rids = sshd_change.rule.split(",")
        applier.apply(sshd_change)
        problem = applier.sshd_reload()
        if problem:
            applier.restore(SSHD_DROP_IN)
            applier.sshd_reload()
            for rid in rids:
                results[rid].update(status="error", message="%s; the previous configuration was put back" % problem)
        else:
            output["sshd_reloaded"] = True
            applied = True
    output["changed"] = applied
    module.exit_json(results=[results[r["id"]] for r in params["rules"]], **output)


if __name__ == "__main__":
    main()
