# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Baseline remediation: plan every change first (file before/after text, commands), then
apply. Planning is idempotent (a plan that changes nothing is empty) and guarded: nothing may
cut the connection user off — sshd settings are validated with `sshd -t` and checked with
`sshd -T -C user=...` before sshd is reloaded; packages and services the connection needs are
never removed or disabled; no write, removal, chmod or chown reaches an SSH key, sshd's
configuration (except through the checked drop-in), sudoers (except drop-ins checked with
`visudo -c`) or the account databases (PathGuard, on the resolved path); nothing removes or
rewrites what the connection runs on (sshd, sudo, python3, the shells, PAM, the name service;
by path, and for removals by the owning package, which the package manager tells); no chmod or
chown reaches a home directory's owner bits, a directory above a home or ~/.ssh, the system
directories, or the sshd, sudo and python3 binaries. The package manager's commands (who owns a
file, what the connection's packages depend on, what a removal would take along) are the
backend's (pkgmgr), run through the planner's `run` under its timeouts."""

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

from ansible_collections.patchwave.endpoint.plugins.module_utils import pkgmgr
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.checks import name_of
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import CommandError

SSHD_MAIN = "/etc/ssh/sshd_config"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-patchwave.conf"
SYSCTL_DROP_IN = "/etc/sysctl.d/60-patchwave.conf"
SUDOERS = "/etc/sudoers"
SUDOERS_DIR = "/etc/sudoers.d"
PROTECTED_PACKAGES = frozenset(["openssh-server", "openssh-sftp-server", "sudo", "python3", "python3-minimal", "dpkg",
                                "apt", "libc6", "systemd", "bash", "login", "passwd", "libpam-modules"])
PROTECTED_UNITS = frozenset(["ssh.service", "sshd.service", "ssh.socket", "systemd-journald.service"])
# who may log in, and whether anyone but root may (pam_nologin)
ACCOUNT_FILES = frozenset(["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/nologin", "/run/nologin",
                           "/var/run/nologin"])
KEY_FILE_NAMES = ("authorized_keys", "authorized_principals")
# sshd options naming files that decide which keys and certificates let someone in
KEY_FILE_OPTIONS = frozenset(["authorizedkeysfile", "authorizedprincipalsfile", "revokedkeys", "trustedusercakeys"])
# sshd options that decide how the connection itself works, or where keys come from
SSHD_CONNECTION_KEYS = frozenset(["port", "listenaddress", "addressfamily", "authenticationmethods",
                                  "authorizedkeysfile", "authorizedkeyscommand", "authorizedkeyscommanduser",
                                  "authorizedprincipalsfile", "authorizedprincipalscommand",
                                  "authorizedprincipalscommanduser", "revokedkeys", "trustedusercakeys",
                                  "chrootdirectory", "forcecommand", "subsystem"])
ROOT_LOGIN_ALLOWED = ("no", "prohibit-password", "without-password")
# sudoers flags that would break a non-interactive `sudo` (Ansible's become) or ask it for
# another password than the connection user's
SUDO_FLAGS_REFUSED = frozenset(["requiretty", "rootpw", "targetpw", "runaspw", "noexec", "intercept"])
# What the connection runs on, as (path, what it is): never written or removed. A path ending
# in `*` is every entry of that directory (at any depth) whose name starts so. /bin, /sbin and
# /lib count as their /usr twins (merged /usr).
CONNECTION_FILES = (
    ("/usr/sbin/sshd", "sshd"),
    ("/usr/lib/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/libexec/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/bin/sudo", "sudo (the connection's become)"),
    ("/usr/lib/sudo", "sudo's plugins"),
    ("/usr/libexec/sudo", "sudo's plugins"),
    ("/etc/sudo.conf", "sudo's plugin configuration"),
    ("/usr/lib/systemd/system/ssh*", "sshd's systemd unit"),
    ("/etc/systemd/system/ssh*", "sshd's systemd unit"),
    ("/usr/bin/python3*", "the python3 Ansible runs"),
    ("/usr/lib/python3*", "python3's standard library (Ansible runs on it)"),
    ("/usr/bin/sh", "the shell Ansible runs its commands with"),
    ("/usr/bin/dash", "the shell Ansible runs its commands with"),
    ("/usr/bin/bash", "a login shell"),
    ("/etc/pam.conf", "PAM's configuration (sshd and sudo authenticate through it)"),
    ("/etc/pam.d", "PAM's configuration (sshd and sudo authenticate through it)"),
    ("/etc/nsswitch.conf", "the name service configuration (how sshd and sudo find users)"),
    ("/etc/security/access.conf", "pam_access's table of who may log in from where"),
    ("/etc/security/limits.conf", "pam_limits' configuration (a limit can stop every session)"),
    ("/etc/security/limits.d", "pam_limits' configuration (a limit can stop every session)"),
    ("/etc/security/time.conf", "pam_time's table of who may log in when"),
)
# never removed (they are still edited, e.g. pwquality.conf)
REMOVE_REFUSED = (
    ("/etc/security", "the configuration of PAM's modules"),
    ("/etc/shells", "the list of login shells"),
)
LIMITS_DIR = "/etc/security/limits.d"
# the one limit that cannot stop a session: how large a core dump may be
CORE_LIMIT = re.compile(r"^\s*(#.*|[^\s#]+\s+(soft|hard|-)\s+core\s+[^\s#]+\s*(#.*)?)?\Z")
# chmod/chown of these (or anything below /dev) can leave every user unable to reach a file or
# run a program, sshd and sudo included
SYSTEM_DIRS = frozenset(["/", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/usr", "/usr/bin", "/usr/sbin", "/usr/lib",
                         "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/var",
                         "/var/lib", "/run", "/tmp", "/var/tmp", "/dev"])
# binaries the connection runs: no chmod or chown at all (a mode only loses bits, and losing
# setuid on sudo or x on sshd's, python3's or a shell is a lock-out)
MODE_REFUSED = (
    ("/usr/sbin/sshd", "sshd"),
    ("/usr/lib/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/libexec/openssh", "sshd's helpers (sshd-session, sftp-server)"),
    ("/usr/bin/sudo", "sudo (the connection's become; it needs its setuid bit)"),
    ("/usr/lib/sudo", "sudo's plugins"),
    ("/usr/libexec/sudo", "sudo's plugins"),
    ("/usr/bin/python3*", "the python3 Ansible runs"),
    ("/usr/lib/python3*", "python3's standard library (Ansible runs on it)"),
    ("/usr/bin/sh", "the shell Ansible runs its commands with"),
    ("/usr/bin/dash", "the shell Ansible runs its commands with"),
    ("/usr/bin/bash", "a login shell"),
)
REMEDIATION_NEEDS = {"file_mode": (), "config_value": ("path", "key", "value"), "line": ("path", "line"),
                     "file_absent": ("path",), "kernel_module": ("name",), "sysctl": ("key", "value"),
                     "sshd_option": ("key", "value"), "package_absent": ("name",), "service_disabled": ("name",)}
NAMES = {
    "kernel_module": (re.compile(r"^[A-Za-z0-9_-]{1,64}\Z"), "a kernel module name"),
    "package_absent": (re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}\Z"), "a package name (no globs)"),
    "service_disabled": (re.compile(r"^[A-Za-z0-9_][A-Za-z0-9@._-]{0,255}\Z"), "a unit name (no globs)"),
}
KEYS = {
    "config_value": re.compile(r"^[A-Za-z0-9_.-]{1,128}\Z"),
    "sysctl": re.compile(r"^[a-z0-9_]+([./][A-Za-z0-9_-]+)+\Z"),
    "sshd_option": re.compile(r"^[A-Za-z][A-Za-z0-9]{1,63}\Z"),
}
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}\$?\Z")


class Refused(Exception):
    """A change the guards do not allow."""


def remediation_problem(rule):
    """'' when a rule's remediation is well formed, else what is wrong. Called by the module
    for every rule before anything is planned (one bad rule fails the whole call, nothing is
    changed) and again by the planner."""
    rid = rule.get("id")
    if not isinstance(rid, str) or not RULE_ID.match(rid):
        return "rule id %r: use letters, digits, dot, dash, underscore (at most 64)" % (rid,)
    fix, check = rule.get("remediation"), rule.get("check") or {}
    if not isinstance(fix, dict) or not isinstance(check, dict):
        return "rule %s: remediation and check are mappings" % rid
    kind = fix.get("type")
    if kind not in REMEDIATION_NEEDS:
        return "rule %s: unknown remediation type %r; use one of %s" % (rid, kind, ", ".join(sorted(REMEDIATION_NEEDS)))
    for name in REMEDIATION_NEEDS[kind]:
        value = fix.get(name)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or (name != "value" and not isinstance(value, str)):
            return "rule %s: remediation %s needs %s (text)" % (rid, kind, name)
    if fix.get("path") is not None and (not isinstance(fix["path"], str) or not fix["path"].startswith("/")):
        return "rule %s: remediation.path %r is not an absolute path" % (rid, fix["path"])
    if kind in NAMES and not NAMES[kind][0].match(fix["name"]):
        return "rule %s: remediation.name %r is not %s" % (rid, fix["name"], NAMES[kind][1])
    if kind in KEYS and not KEYS[kind].match(fix["key"]):
        return "rule %s: remediation.key %r is not a %s key" % (rid, fix["key"], kind.split("_")[0])
    if fix.get("separator", " ") not in (" ", "="):
        return "rule %s: remediation.separator is \" \" or \"=\"" % rid
    if kind == "line" and fix.get("regex") is not None:
        try:
            re.compile(fix["regex"])
        except (re.error, TypeError) as exc:
            return "rule %s: remediation.regex: %s" % (rid, exc)
    if kind == "file_mode":
        paths = check.get("paths")
        if check.get("type", "file_mode") != "file_mode" or not isinstance(paths, list) or not paths or not all(
                isinstance(p, str) and p.startswith("/") for p in paths):
            return "rule %s: a file_mode remediation needs the rule's file_mode check (absolute paths)" % rid
        mode = check.get("mode")
        if mode is not None and not re.match(r"^0?[0-7]{3,4}\Z", str(mode)):
            return "rule %s: check.mode %r is not an octal mode" % (rid, mode)
        for name in ("owner", "group"):
            for value in (check.get(name) if isinstance(check.get(name), list) else [check.get(name)]):
                if value is not None and (not isinstance(value, str) or not USER_NAME.match(value)):
                    return "rule %s: check.%s %r is not a user or group name" % (rid, name, value)
    return ""


def _under(path, directory):
    """`path` is `directory` or inside it (both normalised absolute paths)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _below(path, directory):
    return path.startswith(directory.rstrip("/") + "/")


def _usr_twins(path):
    """`path` and its merged-/usr twin (/bin/sh is /usr/bin/sh, /lib/systemd is /usr/lib/systemd)."""
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if _under(path, top):
            return [path, "/usr" + path]
        if _under(path, "/usr" + top):
            return [path, path[len("/usr"):]]
    return [path]


def _listed(path, entries):
    """What `path` is when it is one of `entries` (see CONNECTION_FILES) or inside one, else ''."""
    for candidate in _usr_twins(path):
        for entry, what in entries:
            if entry.endswith("*"):
                directory, prefix = entry[:-1].rsplit("/", 1)
                if _below(candidate, directory) and any(
                        part.startswith(prefix) for part in candidate[len(directory) + 1:].split("/")):
                    return what
            elif _under(candidate, entry):
                return what
    return ""


def _owner_is_root_only(path):
    return (_under(path, "/etc/ssh") or path == SUDOERS or _under(path, SUDOERS_DIR) or path in ACCOUNT_FILES)


def _token_pattern(token):
    """An sshd path token (%h, %u, %U, %%) as a regular expression over whole paths."""
    parts = re.split(r"(%.)", token)
    out = []
    for part in parts:
        if part == "%%":
            out.append("%")
        elif len(part) == 2 and part.startswith("%"):
            out.append(".*")
        else:
            out.append(re.escape(part))
    return "".join(out)


class PathGuard(object):
    """What remediation never changes, judged on the path as given (normalised) and on the path
    it resolves to (symlinks and `..` followed): anything in any user's ~/.ssh (every home of
    /etc/passwd and of the name service, root's and the connection user's), any
    authorized_keys*/authorized_principals* file and every file sshd's AuthorizedKeysFile,
    AuthorizedPrincipalsFile, RevokedKeys or TrustedUserCAKeys names; under /etc/ssh nothing
    but the sshd drop-in (written after `sshd -t`); /etc/sudoers never, /etc/sudoers.d only
    through a `visudo -c` check; the account databases and nologin; what the connection runs on
    (CONNECTION_FILES, every login shell of /etc/passwd; removals also REMOVE_REFUSED). chmod
    and chown of sshd's, sudo's and the account files stay allowed (the modes only ever get
    stricter) but they stay root's; none at all of the connection's binaries (MODE_REFUSED),
    the system directories, /dev, or a directory above a home, a ~/.ssh or a key directory;
    on a home, no chown and no chmod that takes its owner's bits. `root` points the guard at a
    directory tree instead of / (tests)."""

    def __init__(self, user, root="/"):
        self.user = user
        self.root = root
        self._ssh_dirs = None
        self._key_files = None
        self._key_dirs = None
        self._above = None

    def fs(self, path):
        """Where `path` of the host is on this filesystem."""
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def unroot(self, fs_path):
        if self.root == "/":
            return fs_path
        base = self.root.rstrip("/")
        return "/" + fs_path[len(base):].lstrip("/") if _under(fs_path, base) else fs_path

    def resolve(self, path):
        """`path` with every symlink and `..` resolved, as a path of the host."""
        real = os.path.realpath(self.fs(path))
        if self.root != "/":
            base = os.path.realpath(self.root)
            if _under(real, base):
                return "/" + real[len(base):].lstrip("/")
        return real  # a link out of the tree is judged as the absolute path it points to

    def homes(self):
        homes = set(["/root"])
        for line in (_read(self.fs("/etc/passwd")) or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 7 and fields[5].startswith("/"):
                homes.add(fields[5])
        if self.root == "/":
            try:
                homes.update(entry.pw_dir for entry in pwd.getpwall() if entry.pw_dir.startswith("/"))
            except (KeyError, OSError):
                pass
            home = _home(self.user)
            if home and home.startswith("/"):
                homes.add(home)
        return sorted(homes)

    def ssh_dirs(self):
        """{resolved ~/.ssh: home} for every home."""
        if self._ssh_dirs is None:
            self._ssh_dirs = dict((self.resolve(os.path.join(home, ".ssh")), home) for home in self.homes())
        return self._ssh_dirs

    def key_files(self):
        """[(regex, option value)] of the files sshd's configuration names for keys."""
        if self._key_files is None:
            found = []
            self._key_dirs = {}
            configs = [SSHD_MAIN] + sorted(self.unroot(p) for p in glob.glob(self.fs("/etc/ssh/sshd_config.d/*.conf")))
            for config in configs:
                for line in (_read(self.fs(config)) or "").splitlines():
                    words = re.split(r"[\s=]+", line.strip())
                    if len(words) < 2 or words[0].lower() not in KEY_FILE_OPTIONS:
                        continue
                    for token in words[1:]:
                        token = token.strip('"')
                        if not token or token.lower() == "none" or token.startswith("#"):
                            break
                        found.extend((pattern, "%s %s" % (words[0], token)) for pattern in self._token_paths(token))
                        literal = os.path.dirname(token.split("%", 1)[0])
                        if literal.startswith("/"):
                            for directory in (literal, self.resolve(literal)):
                                self._key_dirs.setdefault(directory, "%s %s" % (words[0], token))
            self._key_files = found
        return self._key_files

    def _token_paths(self, token):
        # relative names are relative to each user's home; a literal directory that is a symlink
        # counts both as written and as resolved
        bases = [token] if token.startswith("/") or token.startswith("%h") else [
            os.path.join(home, token) for home in self.homes()]
        patterns = []
        for path in bases:
            patterns.append(re.compile("^" + _token_pattern(path) + r"\Z"))
            literal = os.path.dirname(path.split("%", 1)[0]) if "%" in path else os.path.dirname(path)
            if literal.startswith("/"):
                real = self.resolve(literal)
                if real != literal:
                    patterns.append(re.compile("^" + re.escape(real) + _token_pattern(path[len(literal):]) + r"\Z"))
        return patterns

    def key_dirs(self):
        """{directory: option value} of the literal directories sshd reads keys from."""
        self.key_files()
        return self._key_dirs

    def login_shells(self):
        """{shell: users} of /etc/passwd: sshd starts every session with the user's shell."""
        entries = []
        for line in (_read(self.fs("/etc/passwd")) or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 7:
                entries.append((fields[0], fields[6]))
        if self.root == "/":
            try:
                entries.extend((entry.pw_name, entry.pw_shell) for entry in pwd.getpwall())
            except (KeyError, OSError):
                pass
        shells = {}
        for name, shell in entries:
            if shell.startswith("/"):
                for path in set([os.path.normpath(shell), self.resolve(shell)]):
                    shells.setdefault(path, set()).add(name)
        return shells

    def above_keys(self):
        """{directory: what lies below it} for every directory above a home, a ~/.ssh or a
        directory sshd reads keys from, and those key directories themselves: sshd reads the
        keys as the user and (StrictModes) only when every directory on the way is root's or
        the user's and not writable by others, so a chmod or chown there can shut users out."""
        if self._above is None:
            below = []  # (path, what it is, the home it is in: judged by the home rule instead)
            for home in self.homes():
                for path in (os.path.normpath(home), self.resolve(home)):
                    below.append((path, "the home directory %s" % home, ()))
            for directory, home in self.ssh_dirs().items():
                below.append((directory, "%s/.ssh" % home, (os.path.normpath(home), self.resolve(home))))
            above = {}
            for directory, option in sorted(self.key_dirs().items()):
                above.setdefault(directory, "where sshd reads keys from (%s)" % option)
                below.append((directory, "where sshd reads keys from (%s)" % option, ()))
            for path, what, home in sorted(below):
                parent = path
                while parent != "/":
                    parent = os.path.dirname(parent)
                    if parent not in home:
                        above.setdefault(parent, what)
            self._above = above
        return self._above

    def home_dirs(self):
        homes = set()
        for home in self.homes():
            homes.update([os.path.normpath(home), self.resolve(home)])
        return homes

    def _mode_problem(self, path, owner, group, mode):
        """A refusal (with %s for the path) for a chmod/chown that could shut users out, or ''."""
        what = _listed(path, MODE_REFUSED)
        if what:
            return "%s is " + what + "; Patchwave never changes its mode or owner (that would lock out the connection user)"
        if path in SYSTEM_DIRS or _under(path, "/dev"):
            return ("%s is a system directory or in /dev; a chmod or chown there would lock out every user, the "
                    "connection user included, so Patchwave does not do it")
        above = self.above_keys()
        if path in above:
            return ("%s is above " + above[path].replace("%", "%%") + "; a chmod or chown there can keep sshd from "
                    "reading the keys below it (StrictModes; sshd reads them as the user) and would lock out its users")
        if path in self.home_dirs():
            if owner is not None or group is not None:
                return ("%s is a home directory; sshd reads ~/.ssh there only while it stays its user's (StrictModes), "
                        "and a chown would lock its user out, so Patchwave does not do it")
            try:
                current = stat.S_IMODE(os.stat(self.fs(path)).st_mode)
            except OSError:
                current = 0o700
            if mode is not None and current & 0o700 & ~mode:
                return ("%%s is a home directory; chmod %04o takes its owner's read, write or search bit (it is %04o) "
                        "and would lock its user out (sshd reads ~/.ssh as the user)" % (mode, current))
        return ""

    def check(self, path, kind, via=None, owner=None, group=None, mode=None):
        """Refused when `kind` ('write', 'remove' or 'mode') of `path` is not allowed. `via`
        names the check a write has passed: 'sshd' (the drop-in, after sshd -t), 'visudo' or
        'limits' (a core limit in /etc/security/limits.d). `owner`, `group` and `mode` are what a
        chmod/chown would set (None: unchanged)."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise Refused("%r is not an absolute path" % (path,))
        given = "/" + os.path.normpath(path).lstrip("/")
        real = self.resolve(path)
        shown = path if real == given else "%s (which is %s)" % (path, real)
        for candidate in (given, real):
            parts = candidate.split("/")
            if ".ssh" in parts:
                raise Refused("%s is in a user's ~/.ssh; Patchwave never changes SSH keys or their directory" % shown)
            if any(part.startswith(KEY_FILE_NAMES) for part in parts):
                raise Refused("%s holds authorized keys; Patchwave never changes it" % shown)
        for directory, home in sorted(self.ssh_dirs().items()):
            if _under(real, directory):
                raise Refused("%s is %s/.ssh; Patchwave never changes SSH keys or their directory" % (shown, home))
        for pattern, option in self.key_files():
            if pattern.match(given) or pattern.match(real):
                raise Refused("%s is where sshd reads keys from (%s); Patchwave never changes it" % (shown, option))
        shells = self.login_shells()
        for candidate in (given, real):
            reason = _system_file(candidate, kind, via, owner)
            if not reason and kind == "mode":
                reason = self._mode_problem(candidate, owner, group, mode)
            if not reason and candidate in shells:
                users = ", ".join(sorted(shells[candidate])).replace("%", "%%")
                reason = ("%s is the login shell of " + users + " (sshd starts "
                          "their sessions with it); changing it would lock them out, so Patchwave does not do it")
            if reason:
                raise Refused(reason % shown)
        target = os.path.realpath(self.fs(path))
        if kind == "write" and os.path.exists(target) and not os.path.isfile(target):
            raise Refused("%s is not a regular file; Patchwave only edits regular files" % shown)


def _system_file(path, kind, via, owner):
    """A refusal (with %s for the path) for sshd's, sudo's and the account files, or ''."""
    if kind == "mode":
        if owner not in (None, "root") and _owner_is_root_only(path):
            return "%%s must stay root's (sshd and sudo check who owns their files); not chown to %s" % owner
        return ""
    if _under(path, "/etc/ssh"):
        if kind == "write" and via == "sshd" and path == SSHD_DROP_IN:
            return ""
        return ("%s is read by sshd; its configuration changes only through an sshd_option remediation "
                "(a drop-in checked with sshd -t first)")
    if path == SUDOERS:
        return "Patchwave never edits or removes %s; use a line remediation in /etc/sudoers.d (checked with visudo -c)"
    if _under(path, SUDOERS_DIR):
        if kind == "write" and via == "visudo" and path != SUDOERS_DIR:
            return ""
        if kind == "remove":
            return "removing %s could take away someone's sudo (the connection's become); Patchwave does not do it"
        return "%s is read by sudo; Patchwave changes it only with a line remediation checked with visudo -c"
    if path in ACCOUNT_FILES:
        return "%s decides who can log in; Patchwave does not edit or remove it"
    what = _listed(path, CONNECTION_FILES)
    if what:
        if kind == "write" and via == "limits" and _below(path, LIMITS_DIR):
            return ""
        if kind == "remove":
            return "%s is " + what + "; removing it would lock out the connection user, so Patchwave does not do it"
        reason = "%s is " + what + "; changing it could lock out the connection user, so Patchwave reports the rule and "
        if _under(path, LIMITS_DIR):
            return reason + "a person fixes it (a line remediation may add core limits here, nothing else)"
        if _under(path, "/etc/pam.d") or _under(path, "/etc/security") or path == "/etc/pam.conf":
            return reason + "a person fixes it (PAM hardening is out of scope for automatic remediation)"
        return reason + "a person fixes it"
    what = _listed(path, REMOVE_REFUSED) if kind == "remove" else ""
    if what:
        return "%s is " + what + "; removing it could lock out the connection user, so Patchwave does not do it"
    return ""


def _sudoers_directive(line):
    """A sudoers line that does something (not blank, not a comment; `#include` and `#1000`
    are directives)."""
    text = line.strip()
    return bool(text) and (not text.startswith("#") or re.match(r"#(include|includedir)\b|#[0-9]", text) is not None)


def sudoers_problem(before, after):
    """'' when the new text of a sudoers drop-in only adds or drops `Defaults` lines that keep
    a non-interactive sudo working, else why not: user and alias specifications decide who may
    become root, and a later rule wins, so Patchwave neither adds nor removes one."""
    old, new = (before or "").splitlines(), after.splitlines()
    for line in [item for item in new if item not in old] + [item for item in old if item not in new]:
        if not _sudoers_directive(line):
            continue
        words = line.split(None, 1)
        if words[0] != "Defaults":
            return ("sudoers line %r is not a plain Defaults line; Patchwave adds and replaces only those (who may "
                    "run what is not a baseline's to change)" % line.strip())
        flags = set(re.split(r"[\s,]+", words[1].strip())) if len(words) > 1 else set()
        bad = sorted(f for f in flags if re.split(r"[+-]?=", f, 1)[0] in SUDO_FLAGS_REFUSED)
        if bad and line in new:
            return "sudoers line %r sets %s, which would break the connection's non-interactive sudo" % (
                line.strip(), ", ".join(bad))
    return ""


def sshd_option_problem(key, value, user):
    """'' when Patchwave's drop-in may set sshd option `key` to `value`, else why not (before
    sshd -t and sshd -T -C user=... judge the whole configuration)."""
    key, text = key.lower(), str(value).strip()
    lowered = text.lower()
    if key in ("match", "include"):
        return "%s opens a block or reads other files; an sshd_option sets one keyword" % key
    if key in SSHD_CONNECTION_KEYS:
        return "%s decides how the connection itself works; Patchwave does not change it" % key
    if key == "permitrootlogin":
        if lowered == "yes":
            return "PermitRootLogin yes lets root log in with a password; use no or prohibit-password"
        if lowered == "forced-commands-only":
            return ("PermitRootLogin forced-commands-only lets root in only with keys that carry a command= option, "
                    "which Patchwave cannot check; use no or prohibit-password")
        if lowered not in ROOT_LOGIN_ALLOWED:
            return "PermitRootLogin %s: use no or prohibit-password" % text
        if lowered == "no" and user == "root":
            return "PermitRootLogin no would lock out the connection user root"
    if key == "pubkeyauthentication" and lowered != "yes":
        return "PubkeyAuthentication %s would lock out the connection user, who logs in with a key" % text
    if key == "maxsessions" and (not text.isdigit() or int(text) < 2):
        return "MaxSessions %s leaves no session for Ansible's multiplexed connection" % text
    if key == "maxauthtries" and (not text.isdigit() or int(text) < 2):
        return "MaxAuthTries %s leaves the connection user a single try" % text
    if key == "logingracetime":
        seconds = _sshd_seconds(lowered)
        if seconds is None or 0 < seconds < 10:
            return "LoginGraceTime %s leaves too little time to log in (0 or at least 10 seconds)" % text
    if key in ("allowusers", "allowgroups"):
        members = text.split()
        if key == "allowusers" and not any(re.match(_glob_re(m.split("@")[0]), user) for m in members):
            return "AllowUsers %s would lock out the connection user %s" % (text, user)
        if key == "allowgroups" and not set(_user_groups(user)) & set(members):
            return "AllowGroups %s would lock out the connection user %s" % (text, user)
    if key in ("denyusers", "denygroups"):
        names = _user_groups(user) if key == "denygroups" else [user]
        if any(re.match(_glob_re(m.split("@")[0]), n) for m in text.split() for n in names):
            return "%s %s would lock out the connection user %s" % (key, text, user)
    return ""


def _sshd_seconds(text):
    """sshd's time format (90, 1m30s, 2h) in seconds, or None."""
    if text.isdigit():
        return int(text)
    parts = re.findall(r"([0-9]+)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * scale[u] for n, u in parts)


class Change(object):
    """One planned change to one file (text before/after) or one command. `kind` and `via`
    are what PathGuard judged (checked again right before the change is applied)."""

    def __init__(self, rule, path=None, before=None, after=None, mode=None, owner=None, group=None, command=None,
                 note="", kind=None, via=None):
        self.rule, self.path, self.before, self.after = rule, path, before, after
        self.mode, self.owner, self.group, self.command, self.note = mode, owner, group, command, note
        self.kind, self.via = kind, via

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
    """Turns the failing rules' remediations into changes, refusing what the guards forbid. A
    rule is planned whole or not at all: a refusal takes back that rule's earlier changes."""

    def __init__(self, run, connection_user, root="/", packages=None):
        self.run = run  # run(argv, timeout) -> (rc, out, err)
        self.user = connection_user
        self.root = root
        # the host's package manager (pkgmgr.for_host); the owners of files, what the connection
        # needs and package removals are its to answer, through `run`
        self.packages = packages or pkgmgr.default()
        self.guard = PathGuard(connection_user, root)
        self.changes = []
        self.refused = {}
        self.sshd = {}  # key -> (value, rule)
        self.sysctl = {}
        self.pending_text = {}  # path -> text after earlier changes in this plan
        self._needed = None  # the installed packages the connection needs (PROTECTED_PACKAGES and their dependencies)

    def text(self, path):
        if path in self.pending_text:
            return self.pending_text[path]
        return _read(self.guard.fs(path))

    def _write(self, rule, path, after, note="", mode=None, via=None):
        self.guard.check(path, "write", via=via)
        before = self.text(path)
        if before == after:
            return
        self.pending_text[path] = after
        self.changes.append(Change(rule, self.guard.fs(path), before, after, mode=mode if before is None else None,
                                   note=note, kind="write", via=via))

    def plan(self, rule):
        rid = str(rule.get("id"))
        problem = remediation_problem(rule)
        if problem:
            self.refused[rid] = problem
            return
        fix, check = rule["remediation"], rule.get("check") or {}
        kind = fix["type"]
        mark, pending = len(self.changes), dict(self.pending_text)
        try:
            if kind == "file_mode":
                self._file_mode(rid, check)
            elif kind == "config_value":
                self.guard.check(fix["path"], "write")  # before the file is even read
                self._write(rid, fix["path"], set_key(self.text(fix["path"]), fix["key"], str(fix["value"]),
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
                problem = sshd_option_problem(fix["key"], str(fix["value"]), self.user)
                if problem:
                    raise Refused(problem)
                self.sshd[fix["key"].lower()] = (str(fix["value"]).strip(), rid)
            elif kind == "package_absent":
                self._package_absent(rid, fix["name"])
            elif kind == "service_disabled":
                self._service_disabled(rid, fix["name"])
        except Refused as exc:
            del self.changes[mark:]
            self.pending_text = pending
            self.refused[rid] = str(exc)

    def finish(self):
        """Aggregate drop-ins (one sshd file, one sysctl file) after every rule was planned."""
        if self.sysctl:
            text = self.text(SYSCTL_DROP_IN) or "# written by Patchwave\n"
            for key, (value, _rid) in sorted(self.sysctl.items()):
                text = set_key(text, key, value, "=")
            rids = sorted(r for _v, r in self.sysctl.values())
            try:
                self._write(",".join(rids), SYSCTL_DROP_IN, text, mode=0o644)
            except Refused as exc:
                self.refused.update((rid, str(exc)) for rid in rids)
                self.sysctl = {}
        if self.sshd:
            try:
                self.guard.check(SSHD_DROP_IN, "write", via="sshd")
            except Refused as exc:
                self.refused.update((rid, str(exc)) for _v, rid in self.sshd.values())
                self.sshd = {}
                return self.changes
            main = self.guard.fs(SSHD_MAIN)
            base = self.text(SSHD_DROP_IN) or "# written by Patchwave; sshd takes the first value it reads\n"
            options = dict(self.sshd)
            text = _with_options(base, options)
            if text != self.text(SSHD_DROP_IN) and sshd_check(self.run, self.user, text, main):
                # find the culprits one by one; the others still go in
                for key, (value, rid) in sorted(self.sshd.items()):
                    problem = sshd_check(self.run, self.user, set_key(base, key, value), main)
                    if problem:
                        self.refused[rid] = problem + "; sshd's configuration was not changed for this rule"
                        del options[key]
                text = _with_options(base, options)
                problem = sshd_check(self.run, self.user, text, main) if options else ""
                if problem:
                    for _value, rid in options.values():
                        self.refused[rid] = problem + "; sshd's configuration was not changed"
                    options = {}
            if options:
                self._write(",".join(sorted(r for _v, r in options.values())), SSHD_DROP_IN,
                            _with_options(base, options), mode=0o600, via="sshd")
        return self.changes

    # --- kinds ---------------------------------------------------------------------------
    def _file_mode(self, rid, check):
        limit = int(str(check["mode"]), 8) if check.get("mode") is not None else None
        groups = check.get("group")
        group = groups[0] if isinstance(groups, list) else groups
        allowed_groups = groups if isinstance(groups, list) else ([groups] if groups else [])
        for pattern in check.get("paths", []):
            for found in sorted(glob.glob(self.guard.fs(pattern))):
                info = os.lstat(found)
                if stat.S_ISLNK(info.st_mode):
                    continue
                mode = stat.S_IMODE(info.st_mode)
                new_mode = mode & limit if limit is not None else mode
                owner = check.get("owner")
                current_owner = name_of(pwd.getpwuid, info.st_uid)
                current_group = name_of(grp.getgrgid, info.st_gid)
                change_owner = owner if owner is not None and owner != current_owner else None
                change_group = group if group is not None and current_group not in allowed_groups else None
                if new_mode != mode or change_owner or change_group:
                    self.guard.check(self.guard.unroot(found), "mode", owner=change_owner, group=change_group,
                                     mode=new_mode if new_mode != mode else None)
                    self.changes.append(Change(rid, found, mode=new_mode if new_mode != mode else None,
                                               owner=change_owner, group=change_group,
                                               note="was %04o %s:%s" % (mode, current_owner, current_group),
                                               kind="mode"))

    def _line(self, rid, fix):
        path = fix["path"]
        given = "/" + os.path.normpath(path).lstrip("/")
        real = self.guard.resolve(path)
        sudoers = _below(given, SUDOERS_DIR) or _below(real, SUDOERS_DIR)
        # pam_limits: a core limit cannot stop a session, every other limit can
        limits = (_below(given, LIMITS_DIR) or _below(real, LIMITS_DIR)) and CORE_LIMIT.match(fix["line"]) is not None
        via = "visudo" if sudoers else ("limits" if limits else None)
        self.guard.check(path, "write", via=via)
        before = self.text(path)
        after = ensure_line(before, fix["line"], fix.get("regex"))
        if after == before:
            return
        if sudoers:
            problem = sudoers_problem(before, after)
            if problem:
                raise Refused(problem)
            self._visudo(after)
            self._write(rid, path, after, note="checked with visudo -c", mode=0o440, via="visudo")
        else:
            self._write(rid, path, after, mode=0o644, via=via)

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
        self.guard.check(path, "remove")
        found = self.guard.fs(path)
        if os.path.lexists(found):
            if not os.path.isfile(found) or os.path.islink(found):
                raise Refused("%s is not a regular file; Patchwave only removes regular files" % path)
            owners = self._owners(path)
            hit = sorted(owners & PROTECTED_PACKAGES)
            if not hit and owners:
                hit = sorted(owners & self._connection_packages(path))
            if hit:
                raise Refused("%s belongs to %s (%s), which the connection needs; removing it would lock out the "
                              "connection user, so Patchwave does not do it"
                              % (path, ", ".join(hit), self.packages.owner_query))
            self.changes.append(Change(rid, found, _read(found), None, kind="remove"))

    def _owners(self, path):
        """The packages that own `path` (as written, resolved, and their merged-/usr twins, which
        the package database may list under either name)."""
        given = "/" + os.path.normpath(path).lstrip("/")
        paths = sorted(set(twin for p in (given, self.guard.resolve(path)) for twin in _usr_twins(p)))
        query = self.packages.owner_query
        try:
            return self.packages.file_owners(self.run, paths)
        except CommandError as exc:
            raise Refused("cannot tell which package owns %s: %s failed (rc %d): %s" % (
                path, query, exc.rc, (exc.stderr or exc.stdout).strip()[-500:]))
        except Exception as exc:  # no package manager: who owns the file cannot be told
            raise Refused("cannot tell which package owns %s (%s: %s); Patchwave removes only files it knows "
                          "the connection does not need" % (path, query, exc)) from exc

    def _connection_packages(self, path):
        if self._needed is None:
            try:
                self._needed = self.packages.needed_packages(self.run, PROTECTED_PACKAGES)
            except CommandError as exc:
                raise Refused("cannot tell which packages the connection needs (%s); %s is not removed"
                              % (exc.msg, path))
        return self._needed

    def _package_absent(self, rid, name):
        if name in PROTECTED_PACKAGES:
            raise Refused("%s carries the connection; Patchwave does not remove it" % name)
        if not self.packages.is_installed(self.run, name):
            return
        try:
            removed = self.packages.removal_plan(self.run, name)
        except CommandError as exc:
            raise Refused("%s, so what it would also remove is unknown: %s"
                          % (exc.msg, (exc.stderr or exc.stdout).strip()[-500:]))
        hit = sorted(set(removed) & PROTECTED_PACKAGES)
        if hit:
            raise Refused("removing %s would also remove %s, which the connection needs" % (name, ", ".join(hit)))
        self.changes.append(Change(rid, command=self.packages.remove_command(name),
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
    """Applies planned changes, backing up every file it touches under `backup_dir`. With a
    `guard` every file change is judged again right before it is made (a path swapped for a
    symlink since the plan is refused)."""

    def __init__(self, run, connection_user, backup_dir, guard=None):
        self.run = run
        self.user = connection_user
        self.backup_dir = backup_dir
        self.guard = guard

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
        if self.guard is not None and change.kind:
            self.guard.check(self.guard.unroot(change.path), change.kind, via=change.via, owner=change.owner,
                             group=change.group, mode=change.mode if change.kind == "mode" else None)
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


def sshd_check(run, user, drop_in_text, main_config=SSHD_MAIN):
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
            handle.write("Include %s\nInclude %s\n" % (candidate, main_config))
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
    root_login = values.get("permitrootlogin", ["prohibit-password"])[0].lower()
    if user == "root" and root_login not in ("yes", "prohibit-password", "without-password"):
        return "PermitRootLogin %s would lock out the connection user root" % root_login
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
