# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Processes still running code that an update replaced, and the services they belong to.

An upgrade replaces a library or binary on disk; a process started before it keeps the old copy
mapped until it restarts. Like checkrestart and needrestart, a process counts as stale when its
executable, or a file it maps with execute permission (shared objects, the binary), was deleted
(/proc/PID/maps and /proc/PID/exe say " (deleted)"; dpkg replaces files by rename, which unlinks
the old inode) or replaced (the path now names another inode than the one mapped: maps gives
device and inode). Data mappings (locale-archive, caches) are not code and do not count, nor do
anonymous memory, memfd:, /dev/shm, SysV segments or files outside `roots`.

All reading goes through `proc_root`, `run_root` and `init_dir`, so tests can point them at a
fake tree; nothing runs at import time and nothing here starts a process.

    stale_processes(proc_root="/proc", roots=ROOTS, run_root="/run", ...) ->
        [{"pid": 812, "command": "sshd", "exe": "/usr/sbin/sshd", "pid1": False,
          "service": "ssh.service" | "pw-tls" | None, "pidfile": "/run/pw-tls.pid" | None,
          "files": ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3", ...]}]   # sorted, at most MAX_FILES
    restart_plan(processes, needrestart_services=None, protected=()) ->
        {"services": [...], "unmanaged": [process, ...], "pid1": process | None, "held_back": [...]}
"""

from __future__ import annotations

import glob
import os
import re
import stat

# where packaged code lives; a stale mapping elsewhere (/tmp, /home) is not the package manager's
ROOTS = ("/usr/", "/lib/", "/lib64/", "/lib32/", "/libx32/", "/bin/", "/sbin/", "/opt/")
MAX_FILES = 20
DELETED = " (deleted)"

# what a service name may look like before it goes into an argv (systemd's unit name characters;
# never a leading '-', never a '/')
SERVICE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9:_.@\\-]{0,254}$")

# services whose restart ends users' sessions or breaks the system bus: a reboot finishes them
UNSAFE_RE = re.compile(r"^(?:dbus|dbus-broker|(?:serial-|container-|console-)?getty(?:@.*)?|user@.*|"
                       r"user-runtime-dir@.*|display-manager|gdm3?|lightdm|sddm|xdm|lxdm|slim|nodm|emergency|rescue)"
                       r"(?:\.service)?$")

# needrestart's names for things that are not units (`systemctl restart` would fail on them)
NEEDRESTART_PSEUDO = ("systemd-manager", "systemd-user", "sysv-init")


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _pids(proc_root):
    try:
        return sorted(int(n) for n in os.listdir(proc_root) if n.isdigit())
    except OSError:
        return []


def parent(proc_root, pid):
    """The parent pid from /proc/PID/status (0 for PID 1 and kernel roots, None when gone)."""
    status = _read(os.path.join(proc_root, str(pid), "status"))
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            value = line.split(":", 1)[1].strip()
            return int(value) if value.isdigit() else None
    return None


def ancestry(proc_root, pid):
    """`pid` and its ancestors, without PID 1 (the init of this pid namespace) and without 0."""
    chain, seen = [], set()
    while pid and pid != 1 and pid not in seen:
        seen.add(pid)
        chain.append(pid)
        pid = parent(proc_root, pid)
    return chain


def _under(path, roots):
    return any(path.startswith(r if r.endswith("/") else r + "/") for r in roots)


def parse_maps(text):
    """/proc/PID/maps -> [(perms, 'maj:min', inode, path)] of file-backed mappings only."""
    found = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue  # anonymous, [heap], [stack], [vdso], memfd:..., anon_inode:...
        perms, dev, inode, path = fields[1], fields[3], fields[4], fields[5]
        if not inode.isdigit() or inode == "0":
            continue
        found.append((perms, dev, int(inode), path))
    return found


def _dev(text):
    major, _colon, minor = text.partition(":")
    try:
        return int(major, 16), int(minor, 16)
    except ValueError:
        return None


def _replaced(dev, inode, current):
    """Whether the file now at the path is another one than the mapped (dev, inode). Device
    numbers are compared only when both are real block devices: overlayfs, btrfs and other
    anonymous-device filesystems report different ones for the same file."""
    if current.st_ino != inode:
        return True
    mapped = _dev(dev)
    if mapped is None or mapped[0] == 0 or os.major(current.st_dev) == 0:
        return False
    return mapped != (os.major(current.st_dev), os.minor(current.st_dev))


def _same_root(proc_root, pid, own_root):
    """False for a process in another container or chroot: its files are not this system's."""
    if own_root is None:
        return True
    try:
        root = os.stat(os.path.join(proc_root, str(pid), "root"))
    except OSError:
        return True  # not visible (a fake tree, or no permission): judge it by its paths
    return (root.st_dev, root.st_ino) == own_root


def stale_files(proc_root, pid, roots=ROOTS):
    """(exe, [stale paths]) of one process; exe is None for kernel threads and vanished pids."""
    base = os.path.join(proc_root, str(pid))
    exe = _readlink(os.path.join(base, "exe"))
    if exe is None:
        return None, []
    stale = set()
    if exe.endswith(DELETED):
        exe = exe[:-len(DELETED)]
        if _under(exe, roots):
            stale.add(exe)
    maps = _read(os.path.join(base, "maps"))
    # a path as the process sees it: through its root when we may look there (mount namespaces)
    root = os.path.join(base, "root")
    through = root if os.path.isdir(root) else ""
    checked = {}
    for perms, dev, inode, path in parse_maps(maps or ""):
        if "x" not in perms:
            continue
        deleted = path.endswith(DELETED)
        if deleted:
            path = path[:-len(DELETED)]
        if not _under(path, roots) or path in stale:
            continue
        if deleted:
            stale.add(path)
            continue
        key = (path, dev, inode)
        if key not in checked:
            try:
                checked[key] = _replaced(dev, inode, os.stat(through + path))
            except OSError:
                checked[key] = False  # unreadable or gone without "(deleted)": not provably stale
        if checked[key]:
            stale.add(path)
    return exe, sorted(stale)


def systemd_unit(cgroup_text):
    """The system service a process belongs to, from /proc/PID/cgroup ('ssh.service'); None for
    user sessions and user services (user@UID.service), scopes and processes outside systemd."""
    paths = {}
    for line in (cgroup_text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    path = paths.get("", paths.get("name=systemd", ""))
    components = [c for c in path.split("/") if c]
    if any(c.startswith("user@") for c in components):
        return None
    for component in reversed(components):
        if component.endswith(".service"):
            return component
    return None


def pidfiles(run_root="/run"):
    """{pid: [pidfiles]} from /run/*.pid and /run/*/*.pid (first line: the pid), sorted."""
    found = {}
    names = sorted(glob.glob(os.path.join(run_root, "*.pid")) + glob.glob(os.path.join(run_root, "*", "*.pid")))
    for path in names:
        if not _trusted_pidfile(path):
            continue
        text = _read(path)
        first = text.strip().split("\n", 1)[0].strip() if text else ""
        if first.isdigit():
            found.setdefault(int(first), []).append(path)
    return found


def _trusted_pidfile(path):
    """Only a regular file owned by root in a root-owned directory nobody else can write names a
    service: /run/lock is world-writable, and a user must not choose what gets restarted."""
    try:
        info = os.lstat(path)
        parent = os.lstat(os.path.dirname(path))
    except OSError:
        return False
    return (stat.S_ISREG(info.st_mode) and info.st_uid == 0 and parent.st_uid == 0
            and not parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def service_of_pidfile(path):
    """/run/sshd.pid -> 'sshd', /run/pw-tls.pid -> 'pw-tls'; None when not a usable name."""
    name = os.path.basename(path)[:-len(".pid")]
    return name if SERVICE_RE.match(name) and "." not in name else None


def _command(proc_root, pid):
    comm = _read(os.path.join(proc_root, str(pid), "comm"))
    return comm.strip() if comm else "?"


def stale_processes(proc_root="/proc", roots=ROOTS, run_root="/run", ignore_pids=None, max_files=MAX_FILES):
    """Every process running replaced code (module docstring), sorted by pid.

    The service is the process's systemd unit (its cgroup), else the pidfile (/run/NAME.pid or
    /run/*/NAME.pid) holding its pid or an ancestor's below PID 1, else None (reported by
    command). PID 1 is reported with `pid1: true` and the service of a pidfile holding 1, if any:
    in containers it is often the only daemon (sshd), and restarting it reboots the container.
    `ignore_pids` defaults to this process and its ancestors (the connection that runs us)."""
    if ignore_pids is None:
        # our own connection's processes, but not a daemon among our ancestors (sshd's listener
        # in ssh.service): that one is scanned like any other service
        ignore_pids = [p for p in ancestry(proc_root, os.getpid())
                       if systemd_unit(_read(os.path.join(proc_root, str(p), "cgroup"))) is None]
    ignored = set(ignore_pids)
    try:
        own = os.stat(os.path.join(proc_root, "self", "root"))
        own_root = (own.st_dev, own.st_ino)
    except OSError:
        own_root = None
    by_pid = None
    found = []
    for pid in _pids(proc_root):
        if pid in ignored or not _same_root(proc_root, pid, own_root):
            continue
        exe, files = stale_files(proc_root, pid, roots)
        if not files:
            continue
        if by_pid is None:
            by_pid = pidfiles(run_root)
        service, pidfile = systemd_unit(_read(os.path.join(proc_root, str(pid), "cgroup"))), None
        if service is None:
            for candidate in [pid] if pid == 1 else ancestry(proc_root, pid):
                if candidate in by_pid:
                    pidfile = by_pid[candidate][0]
                    service = service_of_pidfile(pidfile)
                    break
        found.append({"pid": pid, "command": _command(proc_root, pid), "exe": exe, "files": files[:max_files],
                      "service": service, "pidfile": pidfile, "pid1": pid == 1})
    return found


def bare_name(name):
    """'ssh.service' -> 'ssh'."""
    return name[:-len(".service")] if name.endswith(".service") else name


def restart_plan(processes, needrestart_services=None, protected=()):
    """What to restart: {'services': sorted unique names, 'unmanaged': the stale processes no
    service owns, 'pid1': PID 1's entry when it is stale, else None, 'held_back': the names
    left out of 'services' because they answer for PID 1}.

    needrestart, when installed, knows services this scan cannot (interpreted daemons); its names
    are preferred ('ssh.service' over a pidfile's 'ssh'), the scan adds what it did not list.
    PID 1's service and the `protected` names (pid1_services) are never in 'services':
    restarting PID 1 is a reboot, not a restart."""
    pid1 = None
    services = {}
    for name in needrestart_services or []:
        if name not in NEEDRESTART_PSEUDO and SERVICE_RE.match(name):
            services.setdefault(bare_name(name), name)
    unmanaged = []
    for process in processes:
        if process.get("pid1"):
            pid1 = process
        elif process.get("service"):
            services.setdefault(bare_name(process["service"]), process["service"])
        else:
            unmanaged.append(process)
    never = set(bare_name(n) for n in protected)
    if pid1 is not None and pid1.get("service"):
        never.add(bare_name(pid1["service"]))
    held_back = sorted(services.pop(n) for n in sorted(never) if n in services)
    return {"services": sorted(services.values()), "unmanaged": unmanaged, "pid1": pid1, "held_back": held_back}


def _provides(text):
    """The names an init script's LSB header provides ('# Provides: ssh sshd')."""
    for line in text.splitlines():
        if line.startswith("# Provides:"):
            return line.split(":", 1)[1].split()
    return []


def _scripts(init_dir):
    for path in sorted(glob.glob(os.path.join(init_dir, "*"))):
        text = _read(path) if os.path.isfile(path) else None
        if text and SERVICE_RE.match(os.path.basename(path)):
            yield os.path.basename(path), text


def init_script(name, pidfile=None, init_dir="/etc/init.d"):
    """The SysV init script that manages `name`: /etc/init.d/NAME, else the only script whose LSB
    header provides NAME, else the only one that mentions its pid file (/run/sshd.pid is written
    by /etc/init.d/ssh); None when there is none."""
    if SERVICE_RE.match(name) and os.path.isfile(os.path.join(init_dir, name)):
        return name
    scripts = list(_scripts(init_dir))
    providing = [n for n, text in scripts if name in _provides(text)]
    if len(providing) == 1:
        return providing[0]
    if not pidfile:
        return None
    variants = set([pidfile, pidfile.replace("/run/", "/var/run/", 1)])
    mentions = [n for n, text in scripts if any(v in text for v in variants)]
    return mentions[0] if len(mentions) == 1 else None


def pid1_services(run_root="/run", init_dir="/etc/init.d", proc_root="/proc"):
    """Every name under which PID 1 could be asked to restart: its command, the pid files holding
    1, and the init scripts for them (a container's sshd: sshd, /run/sshd.pid, /etc/init.d/ssh).
    None of them may ever be restarted, whether or not PID 1 itself runs replaced code (needrestart
    may list it when this scan does not)."""
    names = set()
    command = _command(proc_root, 1)
    candidates = [(command, None)] if SERVICE_RE.match(command) else []
    candidates += [(service_of_pidfile(path), path) for path in pidfiles(run_root).get(1, [])]
    for name, pidfile in candidates:
        if not name:
            continue
        names.add(name)
        script = init_script(name, pidfile, init_dir)
        if script:
            names.add(bare_name(script))
    # systemd as PID 1 is not a service, and no unit ever answers for it
    names.discard("systemd")
    names.discard("init")
    return sorted(names)


def needing_restart(plan):
    """Every service of a plan that runs replaced code, PID 1's included (its restart is a reboot)."""
    pid1 = plan.get("pid1") or {}
    names = set(plan["services"]) | set(plan.get("held_back", []))
    return sorted(names | set([pid1["service"]] if pid1.get("service") else []))


def stale_names(plan):
    """Names for a person: the services, PID 1 (as 'sshd (PID 1)') and the commands of processes
    no service owns, sorted and unique."""
    names = set(plan["services"]) | set(p["command"] for p in plan["unmanaged"])
    pid1 = plan.get("pid1")
    if pid1:
        names.add("%s (PID 1)" % (pid1.get("service") or pid1["command"]))
    return sorted(names)
