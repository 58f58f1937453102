# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Baseline checks: one function per check type, each reading the host and returning a verdict
with evidence. Read-only. Commands run from argv lists with a timeout; files are read
directly; paths on network filesystems are never walked. Every path a check reads goes through
Host.path(), so tests can point a Host at a directory tree instead of /.

A check returns Verdict(status, expected, observed, where): status is pass, fail or
not_applicable; an exception means error."""

from __future__ import annotations

import fnmatch
import glob
import grp
import os
import pwd
import re
import shlex
import stat
import subprocess

from ansible_collections.patchwave.endpoint.plugins.module_utils import pkgmgr

EVIDENCE_LIMIT = 2000
NETWORK_FS = frozenset(["nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "ceph", "glusterfs",
                        "fuse.glusterfs", "9p", "afs", "lustre", "davfs", "fuse.s3fs", "fuse.rclone"])


class CheckError(Exception):
    """A check could not decide (bad arguments, unreadable state, a command that failed)."""


class Verdict(object):
    __slots__ = ("status", "expected", "observed", "where")

    def __init__(self, status, expected, observed, where=""):
        self.status = status
        self.expected = expected
        self.observed = observed
        self.where = where


def truncate(text, limit=EVIDENCE_LIMIT):
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + "... [%d more characters]" % (len(text) - limit)


def verdict(ok, expected, observed, where=""):
    return Verdict("pass" if ok else "fail", expected, observed, where)


# C0 and C1 controls, DEL and the two Unicode line separators: str.splitlines() breaks a line at
# every one of them, so a value holding one would become two lines of a configuration file
CONTROL = re.compile(u"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_problem(value, where=""):
    """'' when every string in `value` (dict keys and values, list items, nested) is one line
    of printable text; else which one is not, e.g. 'rules[2].args.path holds a control
    character (U+000A)'. The modules refuse such input whoever calls them."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            place = "%s.%s" % (where, key) if where else str(key)
            problem = control_problem(key, place + " (the key)") or control_problem(value[key], place)
            if problem:
                return problem
        return ""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = control_problem(item, "%s[%d]" % (where, index))
            if problem:
                return problem
        return ""
    if isinstance(value, str):
        found = CONTROL.search(value)
        if found:
            return "%s holds a control character (U+%04X); values and paths must be one line of printable text" % (
                where or "a value", ord(found.group()))
    return ""


class Host(object):
    """What checks read, cached for one assessment."""

    def __init__(self, root="/", runner=None, package_manager=None):
        self.root = root
        self._runner = runner or _run
        self._cache = {}
        # the host's package manager (pkgmgr.for_host): it reads the installed packages
        self.package_manager = package_manager or pkgmgr.default()

    def path(self, path):
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path):
        with open(self.path(path), "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def lines(self, path):
        try:
            return self.read(path).splitlines()
        except (IOError, OSError):
            return None

    def run(self, argv, timeout):
        return self._runner(argv, timeout)

    def cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # --- mounts -----------------------------------------------------------------------------
    def mounts(self):
        def build():
            found = []
            for line in self.lines("/proc/self/mounts") or []:
                fields = line.split()
                if len(fields) >= 4:
                    found.append((_unescape(fields[1]), fields[2], fields[3].split(",")))
            return found
        return self.cached("mounts", build)

    def on_network_fs(self, path):
        best, kind = "", ""
        for point, fstype, _opts in self.mounts():
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fstype
        return kind in NETWORK_FS

    def expand(self, patterns):
        """Glob patterns → existing paths, sorted, skipping anything on a network filesystem."""
        found = []
        for pattern in patterns:
            if any(ch in pattern for ch in "*?["):
                matches = [m[len(self.root.rstrip("/")):] if self.root != "/" else m
                           for m in glob.glob(self.path(pattern))]
            else:
                matches = [pattern] if os.path.lexists(self.path(pattern)) else []
            for match in sorted(matches):
                if not self.on_network_fs(match) and match not in found:
                    found.append(match)
        return found

    # --- packages, accounts ---------------------------------------------------------------
    def packages(self):
        """Installed packages from the package manager's status file: {name: version} (also
        held ones), read through Host.lines() (no command runs)."""
        return self.cached("packages", lambda: self.package_manager.installed_from_status(self.lines))

    def packages_where(self):
        """The file packages() reads, for evidence."""
        return self.package_manager.status_file

    def passwd(self):
        return self.cached("passwd", lambda: _colon_file(self.lines("/etc/passwd"), 7))

    def shadow(self):
        lines = self.lines("/etc/shadow")
        if lines is None:
            raise CheckError("cannot read /etc/shadow (the assessment needs become: true)")
        return self.cached("shadow", lambda: _colon_file(lines, 9))

    def group(self):
        return self.cached("group", lambda: _colon_file(self.lines("/etc/group"), 4))

    # --- sockets ---------------------------------------------------------------------------
    def listening(self):
        """[(proto, address, port, process)] of every listening TCP socket and bound UDP socket."""
        def build():
            owners = _socket_owners(self.path("/proc"))
            found = []
            for proto, name in (("tcp", "tcp"), ("tcp", "tcp6"), ("udp", "udp"), ("udp", "udp6")):
                for line in (self.lines("/proc/net/" + name) or [])[1:]:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    state, inode = fields[3], fields[9]
                    if proto == "tcp" and state != "0A":  # LISTEN
                        continue
                    if proto == "udp" and state != "07":  # unconnected (bound)
                        continue
                    address, port = _hex_address(fields[1])
                    found.append((proto, address, port, owners.get(inode, "")))
            return sorted(set(found))
        return self.cached("listening", build)

    def sshd_effective(self, timeout):
        def build():
            rc, out, err = self.run(["sshd", "-T"], timeout)
            if rc != 0:
                raise CheckError("sshd -T failed (rc %d): %s" % (rc, truncate(err or out, 500)))
            values = {}
            for line in out.splitlines():
                key, _sep, value = line.partition(" ")
                values.setdefault(key.lower(), []).append(value.strip())
            return values
        return self.cached("sshd", build)

    def enabled_services(self):
        """Units enabled through install symlinks in the *.wants directories."""
        found = set()
        for link in self.expand(["/etc/systemd/system/*.wants/*", "/lib/systemd/system/*.wants/*",
                                 "/usr/lib/systemd/system/*.wants/*"]):
            if os.path.realpath(self.path(link)) != "/dev/null":
                found.add(os.path.basename(link))
        return sorted(found)

    def snapshot(self):
        """What drift is computed from: listeners, packages, enabled services, uid-0 accounts."""
        return {
            "listening": ["%s %s:%d %s" % item for item in self.listening()],
            "ports": sorted(set("%s/%d" % (proto, port) for proto, _a, port, _o in self.listening())),
            "packages": self.packages(),
            "services": self.enabled_services(),
            "uid0": sorted(f[0] for _n, f in self.passwd() if f[2] == "0"),
        }

    def systemd_running(self):
        return os.path.isdir(self.path("/run/systemd/system"))


def _run(argv, timeout):
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True)
    except OSError as exc:
        raise CheckError("cannot run %s: %s" % (argv[0], exc))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise CheckError("%s did not finish within %s s" % (" ".join(shlex.quote(a) for a in argv), timeout))
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _unescape(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _colon_file(lines, width):
    rows = []
    for number, line in enumerate(lines or [], start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        fields += [""] * (width - len(fields))
        rows.append((number, fields))
    return rows


def _hex_address(text):
    address, port = text.split(":")
    port = int(port, 16)
    if len(address) == 8:
        raw = bytes(bytearray.fromhex(address))[::-1]
        return ".".join(str(b) for b in bytearray(raw)), port
    words = [address[i:i + 8] for i in range(0, 32, 8)]
    raw = b"".join(bytes(bytearray.fromhex(w))[::-1] for w in words)
    groups = ["%x" % ((bytearray(raw)[i] << 8) | bytearray(raw)[i + 1]) for i in range(0, 16, 2)]
    text = ":".join(groups)
    return ("::" if text == "0:0:0:0:0:0:0:0" else text), port


def _socket_owners(proc):
    owners = {}
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return owners
    for pid in pids:
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                try:
                    with open(os.path.join(proc, pid, "comm")) as handle:
                        owners[target[8:-1]] = "%s (pid %s)" % (handle.read().strip(), pid)
                except (IOError, OSError):
                    owners[target[8:-1]] = "pid %s" % pid
    return owners


# --- check types -----------------------------------------------------------------------------

def check_file(host, args, timeout):
    """A path exists (state present) or does not (state absent)."""
    paths = host.expand([args["path"]])
    want = args.get("state", "present")
    if want == "present":
        return verdict(bool(paths), "%s exists" % args["path"], "exists" if paths else "missing", args["path"])
    return verdict(not paths, "%s absent" % args["path"], "present: %s" % ", ".join(paths) if paths else "absent",
                   args["path"])


def _mode_text(mode):
    return "%04o" % stat.S_IMODE(mode)


def check_file_mode(host, args, timeout):
    """Every path matching the globs has the owner, group and at most the permissions given
    (mode 0640 allows 0600 and 0640 but not 0644). No match: pass unless `require`."""
    paths = host.expand(args["paths"])
    if not paths:
        if args.get("require"):
            return Verdict("fail", "%s exists" % ", ".join(args["paths"]), "no such path", args["paths"][0])
        return Verdict("not_applicable", "", "no such path", args["paths"][0])
    excess = ~int(str(args["mode"]), 8) if args.get("mode") is not None else 0  # bits the mode must not have
    bad = []
    for path in paths:
        info = os.lstat(host.path(path))
        if stat.S_ISLNK(info.st_mode):
            continue
        problems = []
        if stat.S_IMODE(info.st_mode) & excess:
            problems.append("mode %s" % _mode_text(info.st_mode))
        owner = name_of(pwd.getpwuid, info.st_uid)
        group = name_of(grp.getgrgid, info.st_gid)
        if args.get("owner") is not None and owner != args["owner"]:
            problems.append("owner %s" % owner)
        if args.get("group") is not None and group not in _as_list(args["group"]):
            problems.append("group %s" % group)
        if problems:
            bad.append("%s: %s" % (path, ", ".join(problems)))
    expected = ", ".join(x for x in (
        "owner %s" % args["owner"] if args.get("owner") is not None else "",
        "group %s" % "|".join(_as_list(args["group"])) if args.get("group") is not None else "",
        "mode %s or stricter" % args["mode"] if args.get("mode") is not None else "") if x)
    return verdict(not bad, expected, "; ".join(bad) if bad else "%d path(s) as expected" % len(paths),
                   bad[0].split(":")[0] if bad else paths[0])


def name_of(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_file_content(host, args, timeout):
    """A regex (or an exact line) is present in, or absent from, every file matched."""
    paths = [p for p in host.expand(_as_list(args["path"])) if os.path.isfile(host.path(p))]
    want = args.get("state", "present")
    if not paths:
        if want == "absent":
            return Verdict("pass", "no line matching %r" % (args.get("regex") or args.get("line")), "no such file",
                           _as_list(args["path"])[0])
        return Verdict("fail", "file %s" % _as_list(args["path"])[0], "no such file", _as_list(args["path"])[0])
    if args.get("line") is not None:
        def matches(text):
            return text.strip() == args["line"].strip()
        wanted = "line %r" % args["line"]
    else:
        pattern = re.compile(args["regex"], re.MULTILINE if args.get("multiline") else 0)

        def matches(text):
            return pattern.search(text) is not None
        wanted = "a line matching %r" % args["regex"]
    hits = []
    for path in paths:
        for number, text in enumerate(host.lines(path) or [], start=1):
            if matches(text):
                hits.append("%s:%d: %s" % (path, number, text.strip()))
    if want == "present":
        return verdict(bool(hits), wanted, hits[0] if hits else "not found in %s" % ", ".join(paths),
                       hits[0].rsplit(":", 1)[0] if hits else paths[0])
    return verdict(not hits, "no " + wanted, "; ".join(hits[:5]) if hits else "absent",
                   ":".join(hits[0].split(":")[:2]) if hits else paths[0])


def read_config(host, files, separator, comment="#", case_insensitive=True):
    """`key value` (or key=value) settings in file order: [(key, value, 'file:line')]. Each file
    is the first of its name in `files` (globs, in order, each glob sorted), like Include."""
    settings = []
    for path in host.expand(files):
        if not os.path.isfile(host.path(path)):
            continue
        for number, line in enumerate(host.lines(path) or [], start=1):
            text = line.strip()
            if not text or text.startswith(comment):
                continue
            if separator == "=":
                key, sep, value = text.partition("=")
                if not sep:
                    continue
            else:
                parts = text.split(None, 1)
                key, value = parts[0], (parts[1] if len(parts) > 1 else "")
            key = key.strip()
            settings.append((key.lower() if case_insensitive else key, value.strip(), "%s:%d" % (path, number)))
    return settings


def _compare(value, args):
    """Does `value` (str or None) satisfy value/regex/min/max/one_of/absent in args?"""
    if args.get("absent"):
        return value is None
    if value is None:
        return bool(args.get("missing_ok"))
    if args.get("value") is not None:
        return value.lower() == str(args["value"]).lower() if args.get("ignore_case", True) else value == str(args["value"])
    if args.get("one_of") is not None:
        return value.lower() in [str(v).lower() for v in args["one_of"]]
    if args.get("regex") is not None:
        return re.search(args["regex"], value) is not None
    if args.get("min") is not None or args.get("max") is not None:
        try:
            number = int(value.split()[0])
        except (ValueError, IndexError):
            return False
        if args.get("min") is not None and number < int(args["min"]):
            return False
        return args.get("max") is None or number <= int(args["max"])
    return True


def _expected(args):
    if args.get("absent"):
        return "not set"
    for key, text in (("value", "%s"), ("one_of", "one of %s"), ("regex", "matching %r")):
        if args.get(key) is not None:
            return text % (args[key],)
    bounds = []
    if args.get("min") is not None:
        bounds.append(">= %s" % args["min"])
    if args.get("max") is not None:
        bounds.append("<= %s" % args["max"])
    return " and ".join(bounds) or "set"


def check_config_value(host, args, timeout):
    """A key in a `key value` (or key=value) file and its include directories: the effective
    value (first occurrence when `first_wins`, as sshd does; else the last) must satisfy it."""
    settings = read_config(host, _as_list(args["path"]), args.get("separator", " "), args.get("comment", "#"),
                           args.get("ignore_case", True))
    key = args["key"].lower() if args.get("ignore_case", True) else args["key"]
    found = [(v, where) for k, v, where in settings if k == key]
    chosen = (found[0] if args.get("first_wins") else found[-1]) if found else (None, _as_list(args["path"])[0])
    observed = "%s %s" % (args["key"], chosen[0]) if chosen[0] is not None else "%s not set" % args["key"]
    return verdict(_compare(chosen[0], args), "%s %s" % (args["key"], _expected(args)), observed, chosen[1])


def check_sshd(host, args, timeout):
    """The effective sshd configuration (`sshd -T`, includes and defaults resolved)."""
    if "openssh-server" not in host.packages():
        return Verdict("not_applicable", "", "openssh-server is not installed", "")
    values = host.sshd_effective(timeout)
    key = args["key"].lower()
    found = values.get(key)
    value = " ".join(found) if found else None
    if args.get("contains") is not None:
        items = set((value or "").replace(",", " ").split())
        bad = sorted(items & set(_as_list(args.get("forbid") or []))) if args.get("forbid") else []
        ok = set(_as_list(args["contains"])) <= items and not bad
        return verdict(ok, "%s contains %s" % (key, args["contains"]), "%s %s" % (key, value), "sshd -T")
    if args.get("forbid") is not None:
        items = set((value or "").replace(",", " ").split())
        bad = sorted(items & set(_as_list(args["forbid"])))
        return verdict(not bad, "%s without %s" % (key, ", ".join(_as_list(args["forbid"]))),
                       "%s %s" % (key, value) + ("; weak: %s" % ", ".join(bad) if bad else ""), "sshd -T")
    return verdict(_compare(value, args), "%s %s" % (key, _expected(args)), "%s %s" % (key, value), "sshd -T")


SYSCTL_FILES = ["/etc/sysctl.conf", "/etc/sysctl.d/*.conf", "/run/sysctl.d/*.conf", "/usr/local/lib/sysctl.d/*.conf",
                "/usr/lib/sysctl.d/*.conf", "/lib/sysctl.d/*.conf"]


def persisted_sysctl(host, key):
    """The value sysctl --system would set: files by name (first directory wins a name), the
    last assignment wins; /etc/sysctl.conf is read last, as procps does."""
    chosen = {}
    for pattern in SYSCTL_FILES[1:]:
        for path in host.expand([pattern]):
            chosen.setdefault(os.path.basename(path), path)
    ordered = [chosen[name] for name in sorted(chosen)] + ["/etc/sysctl.conf"]
    value, where = None, ""
    wanted = key.replace("/", ".")
    for k, v, w in read_config(host, ordered, "="):
        if k.lstrip("-").replace("/", ".") == wanted:
            value, where = v, w
    return value, where


def check_sysctl(host, args, timeout):
    """A kernel parameter: the running value (/proc/sys) and the persisted one (sysctl.d)."""
    key, want = args["key"], str(args["value"])
    scope = args.get("scope", "both")
    problems, observed = [], []
    where = ""
    if scope in ("runtime", "both"):
        proc = "/proc/sys/" + key.replace(".", "/")
        try:
            running = " ".join(host.read(proc).split())
        except (IOError, OSError):
            return Verdict("not_applicable", "", "%s does not exist in this kernel" % key, proc)
        observed.append("running %s" % running)
        where = proc
        if running != " ".join(want.split()):
            problems.append("running")
    if scope in ("persisted", "both"):
        value, w = persisted_sysctl(host, key)
        observed.append("persisted %s" % (value if value is not None else "(not set)"))
        if value is None or " ".join(value.split()) != " ".join(want.split()):
            problems.append("persisted")
            where = w or where or "/etc/sysctl.d/"
    return verdict(not problems, "%s = %s (%s)" % (key, want, scope), "; ".join(observed), where)


MODPROBE_FILES = ["/etc/modprobe.d/*.conf", "/run/modprobe.d/*.conf", "/usr/lib/modprobe.d/*.conf",
                  "/lib/modprobe.d/*.conf"]


def check_kernel_module(host, args, timeout):
    """A kernel module cannot be loaded (install /bin/false or /bin/true, or blacklisted when
    `blacklist_enough`) and is not loaded now."""
    name = args["name"]
    variants = set([name, name.replace("-", "_"), name.replace("_", "-")])
    install, blacklisted, where = None, None, ""
    for path in host.expand(MODPROBE_FILES):
        for number, line in enumerate(host.lines(path) or [], start=1):
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 3 and fields[0] == "install" and fields[1] in variants:
                install, where = " ".join(fields[2:]), "%s:%d" % (path, number)
            elif len(fields) >= 2 and fields[0] == "blacklist" and fields[1] in variants:
                blacklisted = "%s:%d" % (path, number)
    loaded = any(line.split()[0] in variants for line in host.lines("/proc/modules") or [] if line.split())
    disabled = install is not None and os.path.basename(install.split()[0]) in ("false", "true")
    if args.get("blacklist_enough", False) and blacklisted:
        disabled = True
    observed = []
    observed.append("install %s" % install if install else "no install override")
    observed.append("blacklisted" if blacklisted else "not blacklisted")
    if loaded:
        observed.append("LOADED in the running kernel")
    return verdict(disabled and not loaded, "%s cannot be loaded and is not loaded" % name, "; ".join(observed),
                   where or blacklisted or "/etc/modprobe.d/")


def check_mount(host, args, timeout):
    """A mount point is a separate mount (when `require_mount`) with the options given."""
    point = args["mount"]
    entries = [(p, t, o) for p, t, o in host.mounts() if p == point]
    if not entries:
        if args.get("require_mount"):
            return Verdict("fail", "%s is a separate mount" % point, "not a separate mount", "/proc/self/mounts")
        return Verdict("not_applicable", "", "%s is not a separate mount" % point, "/proc/self/mounts")
    _p, fstype, options = entries[-1]
    missing = [o for o in _as_list(args.get("options", [])) if o not in options]
    return verdict(not missing, "%s mounted with %s" % (point, ",".join(_as_list(args.get("options", []))) or "-"),
                   "%s (%s) %s" % (point, fstype, ",".join(options)) + ("; missing %s" % ",".join(missing) if missing else ""),
                   "/proc/self/mounts")


def check_package(host, args, timeout):
    """Packages are installed (state installed) or not (state absent); names may be globs."""
    installed = host.packages()
    want = args.get("state", "installed")
    found = {}
    for pattern in _as_list(args["name"]):
        for name, version in installed.items():
            if fnmatch.fnmatchcase(name, pattern):
                found[name] = version
    listed = ", ".join("%s %s" % (n, v) for n, v in sorted(found.items()))
    if want == "installed":
        missing = [p for p in _as_list(args["name"]) if not any(fnmatch.fnmatchcase(n, p) for n in found)]
        if args.get("any"):
            return verdict(bool(found), "one of %s installed" % ", ".join(_as_list(args["name"])),
                           listed or "none installed", host.packages_where())
        observed = "; ".join(x for x in (listed, "missing %s" % ", ".join(missing) if missing else "") if x)
        return verdict(not missing, "%s installed" % ", ".join(_as_list(args["name"])), observed,
                       host.packages_where())
    return verdict(not found, "%s not installed" % ", ".join(_as_list(args["name"])), listed or "not installed",
                   host.packages_where())


UNIT_DIRS = ["/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"]


def check_service(host, args, timeout):
    """A service unit is enabled/disabled and active/inactive. Enablement is read from the
    unit's install symlinks; activity from systemd when it runs, else from the process table."""
    unit = args["name"] if "." in args["name"] else args["name"] + ".service"
    files = [d + "/" + unit for d in UNIT_DIRS if os.path.lexists(host.path(d + "/" + unit))]
    if not files:
        if args.get("enabled") is False and args.get("active") in (False, None):
            return Verdict("pass", "%s not enabled" % unit, "no such unit", "")
        if args.get("missing_ok"):
            return Verdict("not_applicable", "", "no such unit", "")
        return Verdict("fail", "%s exists" % unit, "no such unit", UNIT_DIRS[0])
    masked = any(os.path.realpath(host.path(f)) == "/dev/null" for f in files[:1])
    links = host.expand(["/etc/systemd/system/*.wants/" + unit, "/lib/systemd/system/*.wants/" + unit,
                         "/usr/lib/systemd/system/*.wants/" + unit])
    enabled = bool(links) and not masked
    observed = ["masked" if masked else ("enabled (%s)" % links[0] if enabled else "not enabled")]
    ok = True
    if args.get("enabled") is not None and bool(args["enabled"]) != enabled:
        ok = False
    if args.get("active") is not None:
        if host.systemd_running():
            rc, out, _err = host.run(["systemctl", "is-active", unit], timeout)
            active = rc == 0
            observed.append("systemd: %s" % out.strip())
        else:
            process = args.get("process") or unit.rsplit(".", 1)[0]
            active = bool(_processes(host, process))
            observed.append("no systemd; process %s %s" % (process, "running" if active else "not running"))
        if bool(args["active"]) != active:
            ok = False
    want = []
    if args.get("enabled") is not None:
        want.append("enabled" if args["enabled"] else "not enabled")
    if args.get("active") is not None:
        want.append("active" if args["active"] else "not active")
    return verdict(ok, "%s %s" % (unit, " and ".join(want)), "; ".join(observed), files[0])


def _processes(host, name):
    found = []
    proc = host.path("/proc")
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            with open(os.path.join(proc, pid, "comm")) as handle:
                if handle.read().strip() == name:
                    found.append(int(pid))
        except (IOError, OSError):
            continue
    return found


def check_ports(host, args, timeout):
    """Only the allowed ports listen (TCP; UDP with protocols: [tcp, udp]); loopback-only
    listeners are ignored unless `include_loopback`."""
    allowed = set(int(p) for p in _as_list(args.get("allowed", [])))
    protocols = _as_list(args.get("protocols", ["tcp"]))
    extra = []
    for proto, address, port, owner in host.listening():
        if proto not in protocols:
            continue
        if not args.get("include_loopback") and (address.startswith("127.") or address == "::1"):
            continue
        if port not in allowed:
            extra.append("%s %s:%d %s" % (proto, address, port, owner))
    return verdict(not extra, "only %s listening" % (", ".join(str(p) for p in sorted(allowed)) or "no port"),
                   "; ".join(extra) if extra else "no other listener", "/proc/net")


def check_accounts(host, args, timeout):
    """Account database rules: uid0_only_root, no_empty_passwords, shadowed_passwords,
    unique_uids, unique_gids, unique_names, system_shells, password_max_days, password_min_days,
    password_warn_days, root_gid."""
    rule = args["rule"]
    exempt = set(_as_list(args.get("exempt", [])))
    bad = []
    if rule == "uid0_only_root":
        bad = ["/etc/passwd:%d: %s has uid 0" % (n, f[0]) for n, f in host.passwd() if f[2] == "0" and f[0] != "root"]
        expected = "only root has uid 0"
    elif rule == "root_gid":
        bad = ["/etc/passwd:%d: root has gid %s" % (n, f[3]) for n, f in host.passwd() if f[0] == "root" and f[3] != "0"]
        expected = "root's primary group is gid 0"
    elif rule == "shadowed_passwords":
        bad = ["/etc/passwd:%d: %s keeps its password in /etc/passwd" % (n, f[0]) for n, f in host.passwd()
               if f[1] not in ("x", "*", "!")]
        expected = "every password in /etc/shadow"
    elif rule == "no_empty_passwords":
        bad = ["/etc/shadow:%d: %s has an empty password" % (n, f[0]) for n, f in host.shadow() if f[1] == ""]
        expected = "no account without a password"
    elif rule in ("unique_uids", "unique_gids", "unique_names", "unique_group_names"):
        source, column = {"unique_uids": (host.passwd(), 2), "unique_names": (host.passwd(), 0),
                          "unique_gids": (host.group(), 2), "unique_group_names": (host.group(), 0)}[rule]
        seen = {}
        for number, fields in source:
            seen.setdefault(fields[column], []).append(fields[0])
        bad = ["%s shared by %s" % (value, ", ".join(names)) for value, names in sorted(seen.items()) if len(names) > 1]
        expected = "no duplicates (%s)" % rule.replace("_", " ")
    elif rule == "system_shells":
        uid_min = int(args.get("uid_min") or _login_defs(host).get("UID_MIN", "1000"))
        default_shells = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"]
        allowed = set(_as_list(args.get("allowed_shells") or default_shells))
        for number, fields in host.passwd():
            name, uid, shell = fields[0], fields[2], fields[6]
            if name in exempt or name in ("root", "sync", "shutdown", "halt") or not uid.isdigit():
                continue
            if int(uid) < uid_min and shell not in allowed:
                bad.append("/etc/passwd:%d: %s (uid %s) has shell %s" % (number, name, uid, shell))
        expected = "system accounts (uid < %d) cannot log in" % uid_min
    elif rule in ("password_max_days", "password_min_days", "password_warn_days"):
        column = {"password_max_days": 4, "password_min_days": 3, "password_warn_days": 5}[rule]
        limit_key = "max" if rule == "password_max_days" else "min"
        limit = int(args[limit_key])
        for number, fields in host.shadow():
            name, hashed = fields[0], fields[1]
            if name in exempt or not hashed or hashed[0] in "!*":
                continue  # only accounts that can log in with a password
            value = fields[column]
            if not value.isdigit() or (int(value) > limit if limit_key == "max" else int(value) < limit):
                bad.append("/etc/shadow:%d: %s has %s" % (number, name, value or "no value"))
        expected = "%s %s %d for every account with a password" % (rule, "<=" if limit_key == "max" else ">=", limit)
    else:
        raise CheckError("unknown accounts rule %r" % rule)
    return verdict(not bad, expected, "; ".join(bad) if bad else "as expected",
                   bad[0].split(": ")[0] if bad and bad[0].startswith("/") else "/etc/passwd")


def _login_defs(host):
    values = {}
    for key, value, _where in read_config(host, ["/etc/login.defs"], " ", case_insensitive=False):
        values[key] = value
    return values


def check_command(host, args, timeout):
    """A command (argv, never a shell) whose exit code and output must match."""
    rc, out, err = host.run(list(args["argv"]), timeout)
    output = out + err if args.get("stderr") else out
    ok = rc in _as_list(args.get("rc", [0]))
    if args.get("stdout_regex") is not None and not re.search(args["stdout_regex"], output, re.MULTILINE):
        ok = False
    if args.get("stdout_not_regex") is not None and re.search(args["stdout_not_regex"], output, re.MULTILINE):
        ok = False
    expected = "rc in %s" % _as_list(args.get("rc", [0]))
    if args.get("stdout_regex") is not None:
        expected += ", output matching %r" % args["stdout_regex"]
    if args.get("stdout_not_regex") is not None:
        expected += ", output not matching %r" % args["stdout_not_regex"]
    return verdict(ok, expected, "rc %d: %s" % (rc, truncate(output.strip(), 1000)),
                   " ".join(shlex.quote(a) for a in args["argv"]))


CHECKS = {
    "file": check_file,
    "file_mode": check_file_mode,
    "file_content": check_file_content,
    "config_value": check_config_value,
    "sshd": check_sshd,
    "sysctl": check_sysctl,
    "kernel_module": check_kernel_module,
    "mount": check_mount,
    "package": check_package,
    "service": check_service,
    "ports": check_ports,
    "accounts": check_accounts,
    "command": check_command,
}
