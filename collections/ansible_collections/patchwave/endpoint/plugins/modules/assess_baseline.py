#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: assess_baseline
short_description: Assess a whole configuration baseline on a host in one call, with evidence
version_added: "0.2.0"
description:
  - Evaluates every rule of a compiled baseline (a flat list of rules whose parameters are
    already filled in; C(patchwave assess --compile) writes one per host) and returns one result
    per rule - pass, fail, error, not_applicable or excepted - with evidence (expected and
    observed values, the file and line or the command) and how long the rule took.
  - Check types are file, file_mode, file_content, config_value, sshd (effective C(sshd -T)),
    sysctl (running and persisted), kernel_module, mount, package, service, ports, accounts and
    command (an argv list, never a shell). See docs/baselines.md for their arguments.
  - Read-only, so it runs the same in check mode. Each rule runs under its own timeout (a rule
    that hangs becomes an error, the others go on); globs never descend into network
    filesystems (NFS, CIFS, sshfs, ...).
  - A failing rule with an exception in force is reported as excepted with the exception id. An
    exception that expires on day D is in force through D and lapses on D+1 (dates are compared,
    not texts); an expired exception leaves the failure standing and says so in the evidence.
  - Input is validated before any rule runs; a value or path with a newline or another control
    character, or an expiry date that is not YYYY-MM-DD, fails the call.
options:
  rules:
    description:
      - The rules. Each is a dict with C(id), C(type), C(args) (the check's arguments), and
        optionally C(applies) (C(distributions), C(versions), C(device_types)), C(timeout)
        (seconds) and C(exception) (C(id), C(expires) as YYYY-MM-DD, exactly).
    type: list
    elements: dict
    required: true
  device_type:
    description: The host's device type (inventory variable C(patchwave_device_type)), for applicability.
    type: str
    default: ""
  rule_timeout:
    description: Seconds a rule may take when it does not set its own C(timeout).
    type: int
    default: 10
  today:
    description: The date exceptions are checked against (YYYY-MM-DD, exactly); the host's date by default.
    type: str
  snapshot:
    description: Also return RV(snapshot) (listeners, packages, enabled services, uid-0 accounts) for drift.
    type: bool
    default: true
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_none
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Assess the compiled baseline of this host
  patchwave.endpoint.assess_baseline:
    rules: "{{ (lookup('ansible.builtin.file', 'rules.json') | from_json).hosts[inventory_hostname].rules }}"
    device_type: "{{ patchwave_device_type | default('') }}"
  become: true
  register: assessment

- name: One rule, written inline
  patchwave.endpoint.assess_baseline:
    rules:
      - id: ssh-root-login
        type: sshd
        args: {key: permitrootlogin, value: "no"}
"""

RETURN = r"""
results:
  description: One entry per rule, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The rule id.
      type: str
    status:
      description: pass, fail, error, not_applicable or excepted.
      type: str
    evidence:
      description: C(expected), C(observed) and C(where) (file:line, path or command); C(error) for errors; C(reason) when not applicable.
      type: dict
    duration:
      description: Seconds the rule took.
      type: float
    exception:
      description: The exception id that made a failure excepted.
      type: str
      returned: when excepted
    exception_expired:
      description: The exception id of a failing rule whose exception no longer counts (expired, or no valid date).
      type: str
      returned: when a failing rule's exception has expired
  sample: [{"id": "ssh-root-login", "status": "fail", "duration": 0.02,
            "evidence": {"expected": "permitrootlogin no", "observed": "permitrootlogin yes", "where": "sshd -T"}}]
snapshot:
  description: Listening sockets, C(ports) (proto/port), installed C(packages) (name to version), enabled C(services) and C(uid0) accounts.
  returned: when O(snapshot=true)
  type: dict
  sample: {"ports": ["tcp/22"], "services": ["ssh.service"], "uid0": ["root"], "packages": {"bash": "5.2.15-2+b2"}}
summary:
  description: Counts per status, C(total), the host's C(facts) (distribution, version) and C(duration).
  returned: always
  type: dict
  sample: {"pass": 70, "fail": 8, "error": 0, "not_applicable": 4, "excepted": 1, "total": 83, "duration": 0.9}
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.patchwave.endpoint.plugins.module_utils import pkgmgr
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.checks import Host, control_problem
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.rules import assess, parse_day
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result

HOST_ROOT = "/"  # every file a check reads is read below it (tests point it at a directory tree)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type="list", elements="dict", required=True),
            device_type=dict(type="str", default=""),
            rule_timeout=dict(type="int", default=10),
            today=dict(type="str"),
            snapshot=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = Result(module)
    problems = []
    seen = set()
    for index, rule in enumerate(params["rules"]):
        if not isinstance(rule.get("id"), str) or not rule.get("id"):
            problems.append("rules[%d] has no id" % index)
        elif rule["id"] in seen:
            problems.append("rule id %s appears twice" % rule["id"])
        else:
            seen.add(rule["id"])
        if not isinstance(rule.get("type"), str):
            problems.append("rules[%d] has no check type" % index)
        if not isinstance(rule.get("args", {}), dict):
            problems.append("rules[%d].args is not a mapping" % index)
        problem = control_problem(rule, "rules[%d]" % index)
        if problem:
            problems.append(problem)
        exception = rule.get("exception")
        if exception is not None:
            if not isinstance(exception, dict) or not isinstance(exception.get("id"), str):
                problems.append("rules[%d].exception needs an id and expires" % index)
            else:
                try:
                    parse_day(exception.get("expires"))
                except ValueError as exc:
                    problems.append("rules[%d].exception.expires: %s" % (index, exc))
    for name in ("device_type", "today"):
        problem = control_problem(params[name], name)
        if problem:
            problems.append(problem)
    if params["today"] is not None:
        try:
            parse_day(params["today"])
        except ValueError as exc:
            problems.append("today: %s" % exc)
    if problems:
        result.fail("; ".join(problems))
    # read-only: the same in check mode
    started = time.monotonic()
    host = Host(HOST_ROOT, package_manager=pkgmgr.for_host(module, required=False))
    results, summary = assess(params["rules"], params["device_type"], params["rule_timeout"], params["today"], host)
    result.update(changed=False, results=results, summary=summary)
    if params["snapshot"]:
        result["snapshot"] = host.snapshot()
    summary["duration"] = round(time.monotonic() - started, 3)
    result.success()


if __name__ == "__main__":
    main()
