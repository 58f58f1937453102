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
    DenyUsers, AllowGroups, DenyGroups, PubkeyAuthentication no, PermitRootLogin no for root,
    MaxSessions or MaxAuthTries below 2) or change how the connection works (Port,
    ListenAddress, AuthenticationMethods, AuthorizedKeysFile and the other key sources,
    ForceCommand, ChrootDirectory, Subsystem, Match, Include) are refused; PermitRootLogin may
    only be set to no or prohibit-password (never yes or forced-commands-only). The new sshd
    configuration must pass C(sshd -t) and C(sshd -T -C user=...) must still let the connection
    user in before sshd is reloaded; sshd must accept connections after the reload, or the old
    configuration is put back. Packages and units the connection needs (openssh-server, sudo,
    python3, ssh.service, ...) are never removed or disabled.
  - No remediation (file_mode, config_value, line, file_absent, or a drop-in) writes, removes,
    chmods or chowns a path, judged both as given and with symlinks and C(..) resolved, that is
    in any user's C(~/.ssh), is an C(authorized_keys*) or C(authorized_principals*) file or a
    file sshd's AuthorizedKeysFile names, is under C(/etc/ssh) (except the sshd drop-in), is
    C(/etc/sudoers), is in C(/etc/sudoers.d) (except a line remediation that only adds or replaces
    Defaults lines and passes C(visudo -c)), or is an account database or nologin file. chmod and
    chown of sshd's, sudo's and the account files stay allowed, but they stay root's.
  - Nor does it write PAM's configuration (C(/etc/pam.d), C(/etc/security) except core limits in
    C(limits.d)) or C(/etc/nsswitch.conf), remove a file that belongs to a package the
    connection depends on (asked of C(dpkg -S), and by path for sshd, sudo, python3 and the shell),
    chmod or chown the sshd, sudo, python3 and shell binaries, system directories, the directories
    above a home or C(~/.ssh), or take the owner's bits from a home directory.
  - Values and paths with a newline or another control character, malformed remediations and
    unsafe names fail the whole call before anything is planned; nothing is changed.
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

from ansible_collections.patchwave.endpoint.plugins.module_utils import pkgmgr
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.checks import control_problem
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.fixes import (
    SSHD_DROP_IN, SYSCTL_DROP_IN, USER_NAME, Applier, Planner, Refused, remediation_problem)
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result

HOST_ROOT = "/"  # every file is planned and changed below it (tests point it at a directory tree)


def command_runner(extra_env):
    """run(argv, timeout) -> (rc, out, err) for the planner and the applier: an argv list, never a
    shell, with LC_ALL=C (and `extra_env`) and a timeout of its own for every command."""
    def run(argv, timeout):
        env = dict(os.environ, LC_ALL="C", **extra_env)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout,
                              check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    return run


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
    result = Result(module)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", params["batch"]):
        result.fail("batch %r: use letters, digits, dot, dash, underscore" % params["batch"])
    if control_problem(params["state_dir"], "state_dir"):
        result.fail(control_problem(params["state_dir"], "state_dir") + "; nothing was changed")
    user = params["connection_user"] or os.environ.get("SUDO_USER") or os.environ.get("USER") or "root"
    if not USER_NAME.match(user):
        result.fail("connection_user %r is not a user name; nothing was changed" % user)
    problems = []
    seen = set()
    for index, rule in enumerate(params["rules"]):
        if not isinstance(rule.get("remediation"), dict) or not rule.get("id"):
            problems.append("rules[%d] needs an id and a remediation" % index)
            continue
        problem = control_problem(rule, "rules[%d]" % index) or remediation_problem(rule)
        if not problem:
            if rule["id"] in seen:
                problem = "rule id %s appears twice" % rule["id"]
            seen.add(rule["id"])
        if problem:
            problems.append(problem)
    if problems:
        result.fail("; ".join(problems) + "; nothing was changed")

    # plan
    packages = pkgmgr.for_host(module, required=False)
    run = command_runner(packages.noninteractive_env)
    planner = Planner(run, user, root=HOST_ROOT, packages=packages)
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
    result.update(changed=bool(changes), sshd_reloaded=False, backup_dir=backup_dir)
    diffs = [d for d in (c.diff() for c in changes) if d]
    if module._diff:
        result["diff"] = diffs
    # check mode: report the plan
    if module.check_mode or not changes:
        result.success(results=[results[r["id"]] for r in params["rules"]])

    # apply
    applier = Applier(run, user, backup_dir, planner.guard)
    sshd_change = None
    applied = False
    for change in changes:
        if change.path == SSHD_DROP_IN:
            sshd_change = change
            continue
        try:
            applier.apply(change)
            applied = True
        except Refused as exc:
            for rid in change.rule.split(","):
                results[rid].update(status="refused", actions=[], message=str(exc))
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
        try:
            applier.apply(sshd_change)
        except Refused as exc:
            for rid in rids:
                results[rid].update(status="refused", actions=[], message=str(exc))
        except (IOError, OSError) as exc:
            for rid in rids:
                results[rid].update(status="error", message="writing %s failed: %s" % (SSHD_DROP_IN, exc))
        else:
            problem = applier.sshd_reload()
            if problem:
                applier.restore(SSHD_DROP_IN)
                applier.sshd_reload()
                for rid in rids:
                    results[rid].update(status="error",
                                        message="%s; the previous configuration was put back" % problem)
            else:
                result["sshd_reloaded"] = True
                applied = True
    result["changed"] = applied
    result.success(results=[results[r["id"]] for r in params["rules"]])


if __name__ == "__main__":
    main()
