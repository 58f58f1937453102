#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restart_services
short_description: Restart the services that still run code an update replaced
version_added: "0.2.0"
description:
  - Finds every process that still runs replaced code, in one pass over C(/proc) - its executable,
    or a file it maps with execute permission (a shared object), was deleted or replaced on disk
    since it started - and the service each belongs to - its systemd unit, else the pid file in
    C(/run) (C(/run/NAME.pid), C(/run/*/NAME.pid)) holding its pid or an ancestor's. When
    needrestart is installed, its list of services (C(needrestart -b -r l)) is used as well.
  - Restarts each such service with C(systemctl restart UNIT) when the host runs systemd, else
    C(service NAME restart) when C(service) and C(/etc/init.d/NAME) exist, else
    C(/etc/init.d/NAME restart) (the init script that writes the service's pid file when no script
    has its name). Commands are argv lists, never a shell; names are checked before they are used.
  - Then rescans and reports what still runs replaced code.
  - Never restarts the service of PID 1 (in a container PID 1 is often sshd, and restarting it
    reboots the container), services in O(exclude), or services whose restart would end users'
    sessions or break the system bus (dbus, getty, display managers, user managers). They stay in
    RV(pending_restart); all but O(exclude) make RV(reboot_required) true.
  - Processes that no service owns (a login session, a program started by hand) are reported,
    never killed.
  - A restart that fails does not fail the task. It is reported in RV(failed_services) and makes
    RV(reboot_required) true; the host's health checks judge the service itself.
options:
  restart:
    description:
      - V(services) restarts the services that run replaced code.
      - V(never) only reports them.
      - V(reboot) restarts nothing and sets RV(reboot_required) when anything runs replaced code,
        for a reboot to follow (the deploy role's O(restart) policy V(reboot)).
    type: str
    choices: [never, services, reboot]
    default: services
  exclude:
    description:
      - Services never restarted, as unit (C(ssh.service)) or plain (C(ssh)) names. They are
        reported in RV(not_restarted) and RV(pending_restart).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - patchwave.endpoint.attributes
  - patchwave.endpoint.attributes.diff_none
notes:
  - In check mode nothing is restarted; RV(restarted) lists what would be.
  - Needs root to read other processes' memory maps.
author:
  - Patchwave contributors (@patchwave)
"""

EXAMPLES = r"""
- name: Restart what still runs the old libraries
  patchwave.endpoint.restart_services:
  register: restarts

- name: Only report, and never touch the database
  patchwave.endpoint.restart_services:
    restart: never
    exclude: [postgresql@15-main.service]
"""

RETURN = r"""
stale:
  description: The processes that ran replaced code before anything was restarted, sorted by pid.
  returned: always
  type: list
  elements: dict
  sample:
    - {pid: 812, command: openssl, exe: /usr/bin/openssl, pid1: false, service: pw-tls, pidfile: /run/pw-tls.pid,
       files: [/usr/lib/x86_64-linux-gnu/libcrypto.so.3, /usr/lib/x86_64-linux-gnu/libssl.so.3]}
services:
  description: The services that needed a restart (PID 1's included), sorted.
  returned: always
  type: list
  elements: str
  sample: [cron.service, pw-tls]
restarted:
  description: The services restarted (in check mode, those that would be), sorted.
  returned: always
  type: list
  elements: str
  sample: [pw-tls]
failed_services:
  description:
    - The services whose restart failed, with the command and its evidence. (Not C(failed), which
      Ansible reads as the task's own status; a failed restart does not fail the task.)
  returned: always
  type: list
  elements: dict
  sample: [{service: pw-tls, cmd: [/usr/sbin/service, pw-tls, restart], rc: 1, stdout: "", stderr: "no such key"}]
not_restarted:
  description: The services left alone, and why (PID 1, O(exclude), unsafe to restart, or the policy).
  returned: always
  type: list
  elements: dict
  sample: [{service: sshd, reason: "runs as PID 1: restarting it is a reboot"}]
remaining:
  description: The processes still running replaced code after the restarts (the rescan).
  returned: always
  type: list
  elements: dict
pending_restart:
  description: The services still running replaced code after acting, sorted.
  returned: always
  type: list
  elements: str
  sample: [sshd]
reboot_required:
  description:
    - Whether only a reboot finishes the job - PID 1 runs replaced code, a service could not be
      restarted (or was unsafe to restart) - or O(restart=reboot) and anything runs replaced code.
  returned: always
  type: bool
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.patchwave.endpoint.plugins.module_utils import hoststate, restarts
from ansible_collections.patchwave.endpoint.plugins.module_utils.result import Result

SYSTEMD_RUNNING = "/run/systemd/system"
INIT_DIR = "/etc/init.d"
RUN_ROOT = "/run"
PROC_ROOT = "/proc"
UNSAFE_REASON = "unsafe to restart (ends sessions or breaks the system bus): a reboot finishes it"
SETTLE_TRIES = 5  # rescans, a second apart, while a restarted service still shows replaced code


def scan(module):
    """(stale processes, restart plan); needrestart's services count too when it is installed."""
    stale = restarts.stale_processes(PROC_ROOT, run_root=RUN_ROOT)
    needrestart = None
    binary = module.get_bin_path("needrestart")
    if binary:
        rc, out, _err = module.run_command([binary, "-b", "-r", "l"], check_rc=False, environ_update={"LC_ALL": "C"})
        if rc == 0:
            needrestart = hoststate.parse_needrestart(out)["services"]
    return stale, restarts.restart_plan(stale, needrestart, restarts.pid1_services(RUN_ROOT, INIT_DIR, PROC_ROOT))


def restart_argv(module, name, pidfile):
    """The argv that restarts `name` on this host, or None when nothing can."""
    if os.path.isdir(SYSTEMD_RUNNING):
        return [module.get_bin_path("systemctl", required=True), "restart", name]
    script = restarts.init_script(restarts.bare_name(name), pidfile, INIT_DIR)
    if script is None:
        return None
    service = module.get_bin_path("service")
    if service:
        return [service, script, "restart"]
    return [os.path.join(INIT_DIR, script), "restart"]


def pidfiles_by_service(stale):
    return dict((p["service"], p["pidfile"]) for p in stale if p.get("service") and p.get("pidfile"))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            restart=dict(type="str", default="services", choices=["never", "services", "reboot"]),
            exclude=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    outcome = Result(module, changed=False, stale=[], services=[], restarted=[], failed_services=[],
                     not_restarted=[], remaining=[], pending_restart=[], reboot_required=False)
    policy = module.params["restart"]
    bad = [n for n in module.params["exclude"] if not restarts.SERVICE_RE.match(n)]
    if bad:
        outcome.fail("exclude: not a service name: %s" % ", ".join(repr(n) for n in bad))
    excluded = set(restarts.bare_name(n) for n in module.params["exclude"])

    # read and plan
    stale, plan = scan(module)
    result = outcome.values
    result["stale"] = stale
    result["services"] = restarts.needing_restart(plan)
    pid1 = plan["pid1"]
    if pid1 is not None and pid1.get("service"):
        result["not_restarted"].append(dict(service=pid1["service"], reason="runs as PID 1: restarting it is a reboot"))
    for name in plan["held_back"]:
        if not (pid1 and name == pid1.get("service")):
            result["not_restarted"].append(dict(service=name, reason="answers for PID 1: restarting it is a reboot"))

    todo, seen = [], set()
    pidfiles = pidfiles_by_service(stale)
    for name in plan["services"]:
        bare = restarts.bare_name(name)
        if bare in excluded:
            result["not_restarted"].append(dict(service=name, reason="excluded"))
        elif restarts.UNSAFE_RE.match(name):
            result["not_restarted"].append(dict(service=name, reason=UNSAFE_REASON))
        elif policy != "services":
            result["not_restarted"].append(dict(service=name, reason="restart policy is %s" % policy))
        else:
            argv = restart_argv(module, name, pidfiles.get(name))
            if argv is None:
                result["failed_services"].append(dict(service=name, cmd=None, rc=None, stdout="",
                                                      stderr="no systemd, and no init script for %s" % name))
            elif tuple(argv) not in seen:  # needrestart's 'ssh' and a pid file's 'sshd' are one script
                seen.add(tuple(argv))
                todo.append((name, argv))

    # check mode: report the plan
    if module.check_mode:
        result["restarted"] = sorted(name for name, _argv in todo)
        result["changed"] = bool(todo)
        result["remaining"] = stale
        result["pending_restart"] = sorted(set(result["services"]) - set(result["restarted"]))
    else:
        # apply
        for name, argv in todo:
            rc, out, err = module.run_command(argv, check_rc=False, environ_update={"LC_ALL": "C"})
            if rc == 0:
                result["restarted"].append(name)
            else:
                result["failed_services"].append(dict(service=name, cmd=argv, rc=rc, stdout=out, stderr=err))
        result["restarted"].sort()
        result["changed"] = bool(result["restarted"])
        # re-read
        remaining, after = stale, plan
        for attempt in range(SETTLE_TRIES if todo else 1):
            remaining, after = scan(module)
            if not set(result["restarted"]) & set(after["services"]):
                break
            if attempt + 1 < SETTLE_TRIES:
                time.sleep(1)  # a service may take a moment to replace its old processes
        result["remaining"] = remaining
        result["pending_restart"] = restarts.needing_restart(after)

    still = set(result["pending_restart"]) & set(result["restarted"])
    unsafe = [s for s in result["not_restarted"] if s["reason"].startswith(("unsafe", "answers for PID 1"))]
    result["reboot_required"] = bool(
        pid1 is not None
        or (policy == "reboot" and stale)
        or result["failed_services"]
        or unsafe
        or (not module.check_mode and still))
    outcome.success()


if __name__ == "__main__":
    main()
