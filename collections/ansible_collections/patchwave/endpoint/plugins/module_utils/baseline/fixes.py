# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Baseline remediation: plan every change first (file before/after text, commands), then
apply. Planning is idempotent (a plan that changes nothing is empty) and guarded: nothing may
cut the connection user off — sshd settings are validated with `sshd -t` and checked with
`sshd -T -C user=...` before sshd is reloaded; packages and services the connection needs are
never removed or disabled; sudoers drop-ins are validated with `visudo -c`."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import tempfile
import time

from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.checks import name_of

SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-patchwave.conf"
SYSCTL_DROP_IN = "/etc/sysctl.d/60-patchwave.conf"
PROTECTED_PACKAGES = frozenset(["openssh-server", "openssh-sftp-server", "sudo", "python3", "python3-minimal", "dpkg",
                                "apt", "libc6", "systemd", "bash", "login", "passwd", "libpam-modules"])
PROTECTED_UNITS = frozenset(["ssh.service", "sshd.service", "ssh.socket", "systemd-journald.service"])


class Refused(Exception):
    """A change the guards do not allow."""


class Change(object):
    """One planned change to one file (text before/after) or one command."""

    def __init__(self, rule, path=None, before=None, after=None, mode=None, owner=None, group=None, command=None,
                 note=""):
        self.rule, self.path, self.before, self.after = rule, path, before, after
        self.mode, self.owner, self.group, self.command, self.note = mode, owner, group, command, note

    def describe(self):
        if self.command:
            return "run %s" % " ".join(self.command)
        parts = []
        if self.before is None and self.after is not None:
            return "create %s (mode %04o)" % (self.path, self.mode if self.mode is not None else 0o644) + (
                " (%s)" % self.note if self.note else "")
        if self.before != self.after:
            parts.append("write %s" % self.path if self.after is not None else "remove %s" % self.path)
        if self.mode is not None:
            parts.append("chmod %04o %s" % (self.mode, self.path))
        if self.owner is not None or self.group is not None:
            parts.append("chown %s:%s %s" % (self.owner or "", self.group or "", self.path))
        return "; ".join(parts) + (" (%s)" % self.note if self.note else "")

    def diff(self):
        if self.path is None or self.before == self.after:
            return None
        return {"before_header": self.path, "after_header": self.path, "before": self.before or "",
                "after": self.after or ""}


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def set_key(text, key, value, separator=" ", comment="#", case_insensitive=True):
    """Text with `key` set to `value`: the first active line of the key is rewritten, later
    ones commented out, or a line is appended. Idempotent."""
    lines = (text or "").splitlines()
    wanted = "%s%s%s" % (key, " = " if separator == "=" else " ", value)
    done = False
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            if separator == "=":
                name = stripped.split("=", 1)[0].strip()
            else:
                name = stripped.split(None, 1)[0]
            same = name.lower() == key.lower() if case_insensitive else name == key
            if same:
                if not done:
                    out.append(line if _same_setting(stripped, key, value, separator) else wanted)
                    done = True
                else:
                    out.append("%s %s  # superseded by Patchwave" % (comment, line))
                continue
        out.append(line)
    if not done:
        out.append(wanted)
    return "\n".join(out) + "\n"


def _same_setting(line, key, value, separator):
    if separator == "=":
        name, _sep, current = line.partition("=")
    else:
        parts = line.split(None, 1)
        current = parts[1] if len(parts) > 1 else ""
    return current.split("#", 1)[0].strip() == str(value)


def ensure_line(text, line, regex=None):
    """Text that contains `line` (replacing the first line matching `regex`, if given)."""
    lines = (text or "").splitlines()
    if any(item.strip() == line.strip() for item in lines):
        return text
    if regex:
        pattern = re.compile(regex)
        for index, item in enumerate(lines):
            if pattern.search(item):
                lines[index] = line
                return "\n".join(lines) + "\n"
    lines.append(line)
    return "\n".join(lines) + "\n"


class Planner(object):
    """Turns the failing rules' remediations into changes, refusing what the guards forbid."""

    def __init__(self, run, connection_user, root="/"):
        self.run = run  # run(argv, timeout) -> (rc, out, err)
        self.user = connection_user
        self.root = root
        self.changes = []
        self.refused = {}
        self.sshd = {}  # key -> (value, rule)
        self.sysctl = {}
        self.pending_text = {}  # path -> text after earlier changes in this plan

    def text(self, path):
        if path in self.pending_text:
            return self.pending_text[path]
        return _read(path)

    def _write(self, rule, path, after, note="", mode=None):
        before = self.text(path)
        if before == after:
            return
        self.pending_text[path] = after
        self.changes.append(Change(rule, path, before, after, mode=mode if before is None else None, note=note))

    def plan(self, rule):
        fix, check = rule["remediation"], rule.get("check") or {}
        kind = fix["type"]
        rid = rule["id"]
        try:
            if kind == "file_mode":
                self._file_mode(rid, check)
            elif kind == "config_value":
                self._write(rid, fix["path"], set_key(self.text(fix["path"]), fix["key"], fix["value"],
                                                      fix.get("separator", " ")), mode=0o644)
            elif kind == "line":
                self._line(rid, fix)
            elif kind == "file_absent":
                self._absent(rid, fix["path"])
            elif kind == "kernel_module":
                name = fix["name"]
                self._write(rid, "/etc/modprobe.d/patchwave-%s.conf" % name,
                            "# written by Patchwave: %s\ninstall %s /bin/false\nblacklist %s\n" % (rid, name, name),
                            mode=0o644)
            elif kind == "sysctl":
                self.sysctl[fix["key"]] = (str(fix["value"]), rid)
            elif kind == "sshd_option":
                self._sshd_guard(fix["key"].lower(), str(fix["value"]))
                self.sshd[fix["key"].lower()] = (str(fix["value"]), rid)
            elif kind == "package_absent":
                self._package_absent(rid, fix["name"])
            elif kind == "service_disabled":
                self._service_disabled(rid, fix["name"])
            else:
                raise Refused("unknown remediation type %r" % kind)
        except Refused as exc:
            self.refused[rid] = str(exc)

    def finish(self):
        """Aggregate drop-ins (one sshd file, one sysctl file) after every rule was planned."""
        if self.sysctl:
            text = self.text(SYSCTL_DROP_IN) or "# written by Patchwave\n"
            for key, (value, _rid) in sorted(self.sysctl.items()):
                text = set_key(text, key, value, "=")
            self._write(",".join(sorted(r for _v, r in self.sysctl.values())), SYSCTL_DROP_IN, text, mode=0o644)
        if self.sshd:
            base = self.text(SSHD_DROP_IN) or "# written by Patchwave; sshd takes the first value it reads\n"
            options = dict(self.sshd)
            text = _with_options(base, options)
            if text != self.text(SSHD_DROP_IN) and sshd_check(self.run, self.user, text):
                # find the culprits one by one; the others still go in
                for key, (value, rid) in sorted(self.sshd.items()):
                    problem = sshd_check(self.run, self.user, set_key(base, key, value))
                    if problem:
                        self.refused[rid] = problem + "; sshd's configuration was not changed for this rule"
                        del options[key]
                text = _with_options(base, options)
                problem = sshd_check(self.run, self.user, text) if options else ""
                if problem:
                    for _value, rid in options.values():
                        self.refused[rid] = problem + "; sshd's configuration was not changed"
                    options = {}
            if options:
                self._write(",".join(sorted(r for _v, r in options.values())), SSHD_DROP_IN,
                            _with_options(base, options), mode=0o600)
        return self.changes

    # --- kinds ---------------------------------------------------------------------------
    def _file_mode(self, rid, check):
        limit = int(str(check["mode"]), 8) if check.get("mode") is not None else None
        groups = check.get("group")
        group = groups[0] if isinstance(groups, list) else groups
        allowed_groups = groups if isinstance(groups, list) else ([groups] if groups else [])
        for pattern in check.get("paths", []):
            for path in sorted(glob.glob(pattern)):
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    continue
                self._guard_path(path)
                mode = stat.S_IMODE(info.st_mode)
                new_mode = mode & limit if limit is not None else mode
                owner = check.get("owner")
                current_owner = name_of(pwd.getpwuid, info.st_uid)
                current_group = name_of(grp.getgrgid, info.st_gid)
                change_owner = owner if owner is not None and owner != current_owner else None
                change_group = group if group is not None and current_group not in allowed_groups else None
                if new_mode != mode or change_owner or change_group:
                    self.changes.append(Change(rid, path, mode=new_mode if new_mode != mode else None,
                                               owner=change_owner, group=change_group,
                                               note="was %04o %s:%s" % (mode, current_owner, current_group)))

    def _guard_path(self, path):
        real = os.path.realpath(path)
        home = _home(self.user)
        if home and (real == os.path.join(home, ".ssh") or real.startswith(os.path.join(home, ".ssh") + "/")):
            raise Refused("%s holds the connection user's SSH keys; Patchwave does not change it" % path)
        if real.startswith("/etc/ssh/authorized_keys"):
            raise Refused("%s holds authorized keys; Patchwave does not change it" % path)

    def _line(self, rid, fix):
        path = fix["path"]
        if path == "/etc/sudoers":
            raise Refused("Patchwave never edits /etc/sudoers itself; use a file in /etc/sudoers.d")
        after = ensure_line(self.text(path), fix["line"], fix.get("regex"))
        if path.startswith("/etc/sudoers.d/"):
            self._visudo(after)
            self._write(rid, path, after, note="checked with visudo -c", mode=0o440)
        else:
            self._write(rid, path, after, mode=0o644)

    def _visudo(self, text):
        handle, temp = tempfile.mkstemp(prefix="patchwave-sudoers-")
        try:
            os.write(handle, text.encode("utf-8"))
            os.close(handle)
            os.chmod(temp, 0o440)
            try:
                rc, out, err = self.run(["visudo", "-c", "-q", "-f", temp], 30)
            except Exception as exc:  # visudo missing counts as "cannot validate"
                raise Refused("cannot validate the sudoers file: %s" % exc)
            if rc != 0:
                raise Refused("visudo -c rejects the sudoers file: %s" % (err or out).strip())
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def _absent(self, rid, path):
        if os.path.lexists(path):
            if not os.path.isfile(path) or os.path.islink(path):
                raise Refused("%s is not a regular file; Patchwave only removes regular files" % path)
            self.changes.append(Change(rid, path, _read(path), None))

    def _sshd_guard(self, key, value):
        if key in ("allowusers", "allowgroups"):
            members = value.split()
            if key == "allowusers" and not any(re.match(_glob_re(m.split("@")[0]), self.user) for m in members):
                raise Refused("AllowUsers %s would lock out the connection user %s" % (value, self.user))
            if key == "allowgroups" and not set(_user_groups(self.user)) & set(members):
                raise Refused("AllowGroups %s would lock out the connection user %s" % (value, self.user))
        elif key in ("denyusers", "denygroups"):
            names = _user_groups(self.user) if key == "denygroups" else [self.user]
            if any(re.match(_glob_re(m.split("@")[0]), n) for m in value.split() for n in names):
                raise Refused("%s %s would lock out the connection user %s" % (key, value, self.user))
        elif key == "pubkeyauthentication" and value.lower() != "yes":
            raise Refused("PubkeyAuthentication %s would lock out the connection user, who logs in with a key" % value)
        elif key == "permitrootlogin" and self.user == "root" and value.lower() == "no":
            raise Refused("PermitRootLogin no would lock out the connection user root")
        elif key in ("port", "listenaddress", "authenticationmethods", "authorizedkeysfile", "chrootdirectory",
                     "forcecommand"):
            raise Refused("%s decides how the connection itself works; Patchwave does not change it" % key)
        elif key == "maxsessions" and value.isdigit() and int(value) < 2:
            raise Refused("MaxSessions %s leaves no session for Ansible's multiplexed connection" % value)

    def _package_absent(self, rid, name):
        rc, out, err = self.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name], 30)
        if rc != 0 or not out.startswith("ii") and not out.startswith("hi"):
            return
        rc, out, err = self.run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "remove", name], 120)
        removed = re.findall(r"^Remv (\S+)", out, re.MULTILINE)
        hit = sorted(set(removed) & PROTECTED_PACKAGES)
        if hit:
            raise Refused("removing %s would also remove %s, which the connection needs" % (name, ", ".join(hit)))
        self.changes.append(Change(rid, command=["apt-get", "-y", "-q", "remove", name],
                                   note="removes %s" % ", ".join(removed)))

    def _service_disabled(self, rid, name):
        unit = name if "." in name else name + ".service"
        if unit in PROTECTED_UNITS:
            raise Refused("%s carries the connection; Patchwave does not disable it" % unit)
        links = glob.glob("/etc/systemd/system/*.wants/" + unit)
        if not links:
            return
        if shutil.which("systemctl") is None:
            # no systemd on the host (a container): disabling is removing the install symlinks
            for link in sorted(links):
                self.changes.append(Change(rid, command=["rm", "-f", link], note="no systemctl here"))
            return
        self.changes.append(Change(rid, command=["systemctl", "disable", "--now", unit]
                                   if os.path.isdir("/run/systemd/system") else ["systemctl", "disable", unit]))


def _with_options(text, options):
    for key, (value, _rid) in sorted(options.items()):
        text = set_key(text, key, value)
    return text


def _home(user):
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return None


def _user_groups(user):
    try:
        primary = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return []
    return [primary] + [g.gr_name for g in grp.getgrall() if user in g.gr_mem]


def _glob_re(pattern):
    return "^" + re.escape(pattern).replace("\\*", ".*").replace("\\?", ".") + "$"


class Applier(object):
    """Applies planned changes, backing up every file it touches under `backup_dir`."""

    def __init__(self, run, connection_user, backup_dir):
        self.run = run
        self.user = connection_user
        self.backup_dir = backup_dir

    def backup(self, path):
        if os.path.lexists(path) and os.path.isfile(path):
            target = os.path.join(self.backup_dir, path.lstrip("/"))
            if not os.path.exists(target):
                parent = os.path.dirname(target)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o700)
                shutil.copy2(path, target)

    def apply(self, change):
        if change.command:
            rc, out, err = self.run(change.command, 600)
            if rc != 0:
                raise RuntimeError("%s failed (rc %d): %s" % (" ".join(change.command), rc, (err or out).strip()[-500:]))
            return
        self.backup(change.path)
        if change.before != change.after:
            if change.after is None:
                os.unlink(change.path)
                return
            _atomic_write(change.path, change.after, change.mode)
        if change.mode is not None and change.before == change.after:
            os.chmod(change.path, change.mode)
        if change.owner is not None or change.group is not None:
            uid = pwd.getpwnam(change.owner).pw_uid if change.owner else -1
            gid = grp.getgrnam(change.group).gr_gid if change.group else -1
            os.chown(change.path, uid, gid)

    def restore(self, path):
        saved = os.path.join(self.backup_dir, path.lstrip("/"))
        if os.path.exists(saved):
            shutil.copy2(saved, path)
        elif os.path.exists(path):
            os.unlink(path)

    # --- sshd --------------------------------------------------------------------------------
    def sshd_reload(self, port=22, timeout=15):
        """Reload sshd (systemd, or SIGHUP to the pid in /run/sshd.pid) and wait until it
        accepts connections again; '' on success, else why not."""
        if os.path.isdir("/run/systemd/system"):
            rc, out, err = self.run(["systemctl", "reload", "ssh"], 60)
            if rc != 0:
                return "systemctl reload ssh failed: %s" % (err or out).strip()
        else:
            pid = (_read("/run/sshd.pid") or "").strip()
            if not pid.isdigit():
                return "sshd's pid file /run/sshd.pid is missing; cannot reload sshd"
            os.kill(int(pid), signal.SIGHUP)
            time.sleep(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    if conn.recv(64).startswith(b"SSH-"):
                        return ""
            except (IOError, OSError):
                time.sleep(0.5)
        return "sshd did not accept connections on port %d within %d s after the reload" % (port, timeout)


def sshd_check(run, user, drop_in_text):
    """'' when sshd accepts the configuration with `drop_in_text` in place of Patchwave's
    drop-in and still lets `user` in; else why not. Nothing on the host changes: a temporary
    main file includes the candidate first (sshd keeps the first value it reads), then the
    real configuration."""
    workdir = tempfile.mkdtemp(prefix="patchwave-sshd-")
    try:
        candidate = os.path.join(workdir, "candidate.conf")
        main = os.path.join(workdir, "sshd_config")
        with open(candidate, "w") as handle:
            handle.write(drop_in_text)
        with open(main, "w") as handle:
            handle.write("Include %s\nInclude /etc/ssh/sshd_config\n" % candidate)
        rc, out, err = run(["sshd", "-t", "-f", main], 30)
        if rc != 0:
            return "sshd -t rejects the new configuration: %s" % (err or out).strip()[-500:]
        spec = "user=%s,host=localhost,addr=127.0.0.1" % user
        rc, out, err = run(["sshd", "-T", "-f", main, "-C", spec], 30)
        if rc != 0:
            return "sshd -T -C %s fails with the new configuration: %s" % (spec, (err or out).strip()[-500:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    values = {}
    for line in out.splitlines():
        key, _sep, value = line.partition(" ")
        values.setdefault(key.lower(), []).append(value.strip())
    if values.get("pubkeyauthentication", ["yes"])[0].lower() != "yes":
        return "the connection user %s would lose public key authentication" % user
    allow = " ".join(values.get("allowusers", []))
    if allow and not any(re.match(_glob_re(m.split("@")[0]), user) for m in allow.split()):
        return "AllowUsers %s would lock out the connection user %s" % (allow, user)
    deny = " ".join(values.get("denyusers", []))
    if deny and any(re.match(_glob_re(m.split("@")[0]), user) for m in deny.split()):
        return "DenyUsers %s would lock out the connection user %s" % (deny, user)
    return ""


def _atomic_write(path, text, mode):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
    existing = os.stat(path) if os.path.exists(path) else None
    handle, temp = tempfile.mkstemp(dir=parent, prefix=".patchwave-")
    try:
        os.write(handle, text.encode("utf-8"))
        os.close(handle)
        if existing is not None:
            os.chmod(temp, stat.S_IMODE(existing.st_mode))
            os.chown(temp, existing.st_uid, existing.st_gid)
        else:
            os.chmod(temp, mode if mode is not None else 0o644)
        os.rename(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
