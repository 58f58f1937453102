# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The package-manager interface the patch modules are written against.

apt is the first backend; dnf plugs in beside it by implementing the same methods. Nothing here
runs at import time and nothing talks to the host directly: backends do, through the module's
run_command with argv lists.
"""

from __future__ import annotations

import re

# Debian policy names, optionally with a foreign architecture ("libc6:i386"); rpm names fit the
# same shape. Versions may carry an epoch ("1:2.3-4") and "~" ("1.0~rc1-1").
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(?::[a-z0-9][a-z0-9\-]*)?$")
VERSION_RE = re.compile(r"^(?:[0-9]+:)?[0-9A-Za-z][0-9A-Za-z.+~\-]*$")


# Patch cycle ids name directories on the host: nothing that could climb out of them.
CYCLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def cycle_id_problem(cycle_id):
    """An error message when `cycle_id` is not usable, else None."""
    if CYCLE_RE.match(cycle_id or ""):
        return None
    return "cycle_id %r: use letters, digits, '.', '_' or '-' (at most 64, not starting with '.')" % (cycle_id,)


class PackageSpecError(ValueError):
    """A requested `name=version` is malformed (and is refused before any command runs)."""


def parse_specs(specs):
    """Turn ['name=version', ...] into an ordered {name: version}; refuse anything that is not one.

    The strict patterns also make it impossible to smuggle options or shell syntax through a
    package name ("-o", ";", spaces, "$(...)").
    """
    wanted = {}
    for spec in specs:
        if not isinstance(spec, str) or "=" not in spec:
            raise PackageSpecError("%r is not of the form name=version" % (spec,))
        name, version = spec.split("=", 1)
        if not NAME_RE.match(name):
            raise PackageSpecError("%r: invalid package name %r" % (spec, name))
        if not VERSION_RE.match(version):
            raise PackageSpecError("%r: invalid version %r" % (spec, version))
        if name in wanted and wanted[name] != version:
            raise PackageSpecError("%s is asked for at two versions: %s and %s" % (name, wanted[name], version))
        wanted[name] = version
    return wanted


class CommandError(Exception):
    """A package-manager command failed; carries the evidence."""

    def __init__(self, msg, cmd=None, rc=None, stdout="", stderr=""):
        super(CommandError, self).__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def as_result(self):
        return {"msg": self.msg, "cmd": self.cmd, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


class PackageManager(object):
    """What every backend provides. Methods return plain data (dicts/lists) for module results."""

    name = "base"

    def __init__(self, module):
        self.module = module

    def refresh(self):
        raise NotImplementedError

    def installed_versions(self, names=None):
        """{name: version} of installed packages (all, or only `names`)."""
        raise NotImplementedError

    def pending_updates(self):
        """List of dicts: name, installed, candidate, source, origins, security, held, new_install."""
        raise NotImplementedError

    def held_packages(self):
        raise NotImplementedError

    def download(self, wanted):
        raise NotImplementedError

    def install(self, wanted, allow_held=False, lock_timeout=300, conffile_policy="keep_local"):
        raise NotImplementedError

    def health(self):
        """dpkg/rpm database health: {'clean': bool, 'output': str}."""
        raise NotImplementedError


def version_lines(versions):
    """Diff text: sorted `name version` lines."""
    return "".join("%s %s\n" % (name, versions[name]) for name in sorted(versions))


END_STATES = ("patched", "patched-pending-reboot", "patched-pending-restart", "partially-patched", "failed",
              "rolled-back", "excluded")


def _names(names, most=10):
    shown = ", ".join(names[:most])
    return shown + (" and %d more" % (len(names) - most) if len(names) > most else "")


def end_state(expected, installed, reboot_required, rolled_back=None, stale=None):
    """One truthful end state for a host from what is installed now.

    expected: {name: wanted version}; installed: {name: version}; rolled_back: None, or the
    journal's {'before': {name: version}, 'new': [names]} when the cycle was rolled back;
    stale: the services (or, for processes no service owns, the commands) still running code the
    update replaced. A patched host with such processes and no reboot pending is
    patched-pending-restart: the fix is on disk but not yet in memory.
    Returns (state, detail, packages)."""
    packages = [dict(name=n, wanted=v, installed=installed.get(n)) for n, v in sorted(expected.items())]
    if rolled_back is not None:
        wrong = [n for n, v in sorted(rolled_back.get("before", {}).items()) if installed.get(n) != v]
        wrong += [n for n in sorted(rolled_back.get("new", [])) if n in installed]
        if not wrong:
            return "rolled-back", "every package is back at its version before the cycle", packages
        return "failed", "rollback incomplete: %s" % ", ".join(wrong), packages
    if not expected:
        return "excluded", "no approved updates for this host", packages
    done = [p["name"] for p in packages if p["installed"] == p["wanted"]]
    missing = [p["name"] for p in packages if p["installed"] != p["wanted"]]
    stale = sorted(set(stale or []))
    if not missing:
        if reboot_required:
            detail = "all %d package(s) installed; a reboot is pending" % len(done)
            if stale:
                detail += " (still running replaced code: %s)" % _names(stale)
            return "patched-pending-reboot", detail, packages
        if stale:
            return ("patched-pending-restart", "all %d package(s) installed; still running replaced code: %s"
                    % (len(done), _names(stale)), packages)
        return "patched", "all %d package(s) at the approved version" % len(done), packages
    if done:
        return "partially-patched", "not at the approved version: %s" % ", ".join(missing), packages
    return "failed", "no package at the approved version: %s" % ", ".join(missing), packages
