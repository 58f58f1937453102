# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host facts the patch modules need that are not the package manager's: who holds a lock,
whether the host must reboot and why. Parsing is pure; reading /proc and /boot is in small
functions that take their paths as arguments, so tests can point them elsewhere."""

from __future__ import annotations

import os
import re
import time


def parse_proc_locks(text):
    """/proc/locks lines → [(pid, 'maj:min:inode')] for every lock (POSIX, FLOCK, OFD)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 00:2f:123456 0 EOF"; blocked waiters start with "->"
        if len(fields) >= 6 and fields[1] != "->":
            pid, where = fields[4], fields[5]
            if pid.isdigit():
                found.append((int(pid), where))
    return found


def lock_holders(paths, proc="/proc"):
    """Processes holding a lock on any of `paths`: [{'pid', 'command', 'file'}].

    /proc/locks names the locked inode by device numbers that, on overlay filesystems
    (containers), are not the ones stat() shows; so a process counts as a holder when it has a
    lock listed there and one of its open file descriptors is one of `paths`."""
    real = dict((os.path.realpath(p), p) for p in paths)
    try:
        with open(os.path.join(proc, "locks")) as handle:
            pids = sorted(set(pid for pid, _where in parse_proc_locks(handle.read())))
    except OSError:
        return []
    holders = []
    for pid in pids:
        if pid == os.getpid():
            continue
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        held = set()
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in real:
                held.add(real[target])
        for path in sorted(held):
            holders.append({"pid": pid, "command": _command(proc, pid), "file": path})
    return sorted(holders, key=lambda h: (h["file"], h["pid"]))


def _command(proc, pid):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
        return " ".join(argv)[:200]
    except OSError:
        return "?"


def wait_for_unlocked(paths, timeout, poll=1.0, sleep=time.sleep, clock=time.monotonic):
    """Wait until nobody holds a lock on `paths`; return the holders still there at the deadline
    (empty when the locks were free in time) and how long it waited."""
    started = clock()
    while True:
        holders = lock_holders(paths)
        waited = clock() - started
        if not holders or waited >= timeout:
            return holders, round(waited, 1)
        sleep(min(poll, max(0.0, timeout - waited)))


_VMLINUZ = re.compile(r"^vmlinuz-(.+)$")


def installed_kernels(boot="/boot"):
    try:
        names = os.listdir(boot)
    except OSError:
        return []
    return sorted(m.group(1) for m in (_VMLINUZ.match(n) for n in names) if m)


def kernel_signal(running, installed, compare):
    """'kernel-newer' when a newer kernel than the running one is installed. `compare(a, b)`
    returns <0, 0, >0 like dpkg --compare-versions."""
    if not installed:
        return None
    newest = installed[0]
    for version in installed[1:]:
        if compare(version, newest) > 0:
            newest = version
    if newest != running and compare(newest, running) > 0:
        return {"signal": "kernel-newer", "running": running, "newest": newest}
    return None


def parse_needrestart(text):
    """needrestart batch mode (-b) → {'kernel_status': int|None, 'services': [...]}.
    Kernel status 2 (ABI upgrade) and 3 (version upgrade) mean a reboot is needed."""
    status = None
    services = []
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        value = value.strip()
        if key == "NEEDRESTART-KSTA" and value.isdigit():
            status = int(value)
        elif key == "NEEDRESTART-SVC" and value:
            services.append(value)
    return {"kernel_status": status, "services": sorted(services)}
