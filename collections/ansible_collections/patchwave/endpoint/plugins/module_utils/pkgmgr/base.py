# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The package-manager interface the patch modules are written against.

apt is the first backend; dnf plugs in beside it by implementing the same methods (and joining
pkgmgr.BACKENDS): no module, and no module_util but the backend, knows which package manager
runs the host. Nothing here runs at import time and nothing talks to the host directly: backends
do, with argv lists. Also here: what the modules share about packages whatever the backend
(name=version specs, cycle ids, CommandError and its evidence).
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


def tail(text, lines=6):
    """The last `lines` lines of a command's output as one line of evidence."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class PackageManager(object):
    """What every backend provides: every call a module or a module_util (other than the
    backend itself) makes on a package manager is declared here. Methods return plain data
    (dicts/lists) for module results; a failed command raises CommandError with its evidence.

    A backend is picked for the host by pkgmgr.for_host(), which asks each backend's present().
    Most methods run commands through the module (`self.module.run_command`, argv lists,
    LC_ALL=C). The baseline's remediation has no module at hand and runs every command under a
    timeout of its own: the methods it uses take its `run(argv, timeout) -> (rc, out, err)` as
    their first argument, and may be called on a backend made without a module."""

    name = "base"
    # the tools whose presence on the PATH says that the host runs this package manager
    commands = ()

    # How messages name the backend's tools for people (the evidence says what really ran).
    installer = ""  # the tool whose database an interrupted run leaves half-done ("dpkg")
    front_end = ""  # the tool that resolves and installs ("apt-get")
    repair_command = ""  # what repair_interrupted() runs ("dpkg --configure -a")
    repair_hint = ""  # what a person runs to repair a broken host by hand ("apt-get -f install")
    owner_query = ""  # the query that tells which package owns a file ("dpkg -S")

    # Environment that keeps the backend's commands from asking questions when they run through
    # someone else's runner (the remediation's `run`).
    noninteractive_env = {}

    # The file installed_from_status() reads, as evidence names it.
    status_file = ""

    def __init__(self, module):
        self.module = module

    @classmethod
    def present(cls, module):
        """Whether this host runs this package manager (its `commands` are on the PATH)."""
        raise NotImplementedError

    @property
    def cache_dir(self):
        """Where downloaded packages are kept until they are installed (free space is checked there)."""
        raise NotImplementedError

    # --- reading the host -------------------------------------------------------------------
    def use_link(self, limit_kbps=0, relay=None):
        """Every later download goes at most `limit_kbps` KB/s (0: no limit) and through the
        caching proxy `relay` when given (thinlink)."""
        raise NotImplementedError

    def refresh(self):
        """Refresh the package lists; a list that cannot be verified is a failure."""
        raise NotImplementedError

    def installed_versions(self, names=None):
        """{name: version} of installed packages (all, or only `names`; unknown names are left out)."""
        raise NotImplementedError

    def source_packages(self):
        """{binary package name: source package name} of every installed package."""
        raise NotImplementedError

    def pending_updates(self):
        """(updates, removals) of a full upgrade, without changing anything. updates: sorted
        dicts with name, installed, candidate, arch, source, origins, security, held,
        new_install, new_packages, removes, required_by, needs_new_packages; removals: dicts
        with name and installed."""
        raise NotImplementedError

    def held_packages(self):
        """Sorted names of the packages held at their version."""
        raise NotImplementedError

    def reboot_required(self):
        """{'required': bool, 'packages': [...], 'signals': [...], 'details': {...}}: every
        signal that says the host must reboot, and which one fired."""
        raise NotImplementedError

    def lock_holders(self):
        """[{'pid', 'command', 'file'}] of the processes holding the package manager's locks."""
        raise NotImplementedError

    def wait_for_lock(self, timeout):
        """Wait up to `timeout` seconds for the package manager's locks; return the seconds
        waited; CommandError naming the holder when they are still held."""
        raise NotImplementedError

    def health(self):
        """The package database's health: {'clean': bool, 'output': str, ...} (the backend
        may add the result of further checks; health_text() and health_problem() read them)."""
        raise NotImplementedError

    def health_text(self, health):
        """A health() for people: which checks pass, or what the failing ones said (tail)."""
        raise NotImplementedError

    def health_problem(self, health):
        """(check, its output) of the first failing check of an unclean health()."""
        raise NotImplementedError

    # --- staging ----------------------------------------------------------------------------
    def sizes(self, wanted):
        """{name: bytes} of the package file of each name=version of `wanted`."""
        raise NotImplementedError

    def cached_package(self, name, version):
        """Path of the downloaded package file of name=version in cache_dir, or None."""
        raise NotImplementedError

    def index_entries(self, wanted):
        """{name: {uri, filename, size, hash}} for each name=version of `wanted`: where the
        package manager takes the file from and the checksum ('sha256:...') its signed index gives."""
        raise NotImplementedError

    def download(self, wanted, lock_timeout=300):
        """Download every name=version of `wanted` into cache_dir, installing nothing."""
        raise NotImplementedError

    def stage_local(self, entry, name, version):
        """Copy the package file of an index entry whose source is a local (file:) repository
        into cache_dir, where the package manager would not copy it itself; return its path."""
        raise NotImplementedError

    def package_fields(self, path):
        """(name, version) a package file says it holds."""
        raise NotImplementedError

    def changelog(self, path, name, installed_version):
        """What the package file's own changelog says of the entries newer than
        `installed_version` (changelog.parse()), or None when it has none of its own."""
        raise NotImplementedError

    def save_rollback(self, versions, directory):
        """Keep a reinstallable package file of every installed name=version of `versions` in
        `directory`: {name: {'before': version, 'file': path, 'method': how it was obtained}}."""
        raise NotImplementedError

    # --- changing the host ------------------------------------------------------------------
    def repair_interrupted(self):
        """Finish what an interrupted run left half-done; None when the database was clean,
        else {'before': what health() said, 'rc': rc, 'output': output}."""
        raise NotImplementedError

    def install(self, wanted, allow_held=False, lock_timeout=300, conffile_policy="keep_local"):
        """Install exactly every name=version of `wanted`; (rc, stdout, stderr)."""
        raise NotImplementedError

    def restore(self, files, remove, lock_timeout=300, conffile_policy="keep_local", simulate=False):
        """In one call, install the saved package `files` (downgrades allowed) and remove the
        packages `remove`; (rc, stdout, stderr). `simulate` only plans it."""
        raise NotImplementedError

    def restore_plan(self, files, remove, lock_timeout=300):
        """What restore() would do, simulated (nothing changes): (rc, stdout, stderr, installs,
        removals), installs as [(name, version)] and removals as [name], in the backend's order."""
        raise NotImplementedError

    # --- the baseline (no module: commands through the caller's `run`) ---------------------
    def installed_from_status(self, lines):
        """{name: version} of installed packages read from status_file, running nothing;
        `lines(path)` returns a host file's lines, or None when it cannot be read."""
        raise NotImplementedError

    def file_owners(self, run, paths):
        """Names of the packages that own any of `paths`. An error of `run` propagates; a
        failed query raises CommandError (with its rc, stdout and stderr)."""
        raise NotImplementedError

    def needed_packages(self, run, roots):
        """The installed packages `roots` (and the essential ones) need, recursively;
        CommandError, with what went wrong as its message, when the database cannot be read."""
        raise NotImplementedError

    def is_installed(self, run, name):
        """Whether package `name` is installed."""
        raise NotImplementedError

    def removal_plan(self, run, name):
        """The names of the packages that removing `name` would remove, simulated; CommandError
        (its message names the simulation) when it fails."""
        raise NotImplementedError

    def remove_command(self, name):
        """The argv that removes package `name` non-interactively (run later by the remediation)."""
        raise NotImplementedError
