# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""apt/dpkg backend. Works without python3-apt: it drives apt-get, apt-mark and dpkg-query."""

from __future__ import annotations

import glob
import os
import re

from ansible_collections.patchwave.endpoint.plugins.module_utils import hoststate, thinlink
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import CommandError, PackageManager

ENV = {
    "LC_ALL": "C",
    "DEBIAN_FRONTEND": "noninteractive",
    "NEEDRESTART_MODE": "a",
    "APT_LISTCHANGES_FRONTEND": "none",
}
ARCHIVES = "/var/cache/apt/archives"
REBOOT_REQUIRED = "/var/run/reboot-required"
LOCK_FILES = (
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/cache/apt/archives/lock",
    "/var/lib/apt/lists/lock",
)

# "Inst pw-tools [1.0-1] (2.0-1 Patchwave Lab Security:patchwave-lab-security [all])"
_INST_RE = re.compile(r"^Inst (?P<name>\S+) (?:\[(?P<installed>[^\]]+)\] )?\((?P<candidate>\S+) (?P<origins>.*?) \[(?P<arch>[^\]]+)\]\)")
_REMV_RE = re.compile(r"^Remv (?P<name>\S+) \[(?P<installed>[^\]]+)\]")


def parse_origins(text):
    """'Debian:12.5/stable, Debian-Security:12/stable-security' → [{'label':..., 'suite':...}]."""
    origins = []
    for part in text.split(", "):
        label, _sep, rest = part.partition(":")
        suite = rest.split("/")[-1] if rest else ""
        origins.append({"label": label.strip(), "suite": suite.strip()})
    return origins


def is_security_origin(origins):
    return any(o["suite"].endswith("-security") or "security" in o["label"].lower() for o in origins)


def parse_simulation(output):
    """Parse `apt-get -s dist-upgrade` into (upgrades/new installs, removals)."""
    updates, removals = [], []
    for line in output.splitlines():
        match = _INST_RE.match(line)
        if match:
            origins = parse_origins(match.group("origins"))
            updates.append({
                "name": match.group("name"),
                "installed": match.group("installed"),
                "candidate": match.group("candidate"),
                "arch": match.group("arch"),
                "origins": origins,
                "security": is_security_origin(origins),
                "new_install": match.group("installed") is None,
                "held": False,
            })
            continue
        match = _REMV_RE.match(line)
        if match:
            removals.append({"name": match.group("name"), "installed": match.group("installed")})
    return updates, removals


def parse_policy_candidate(output):
    """Installed and candidate version from `apt-cache policy NAME`."""
    installed = re.search(r"^\s*Installed: (\S+)", output, re.M)
    candidate = re.search(r"^\s*Candidate: (\S+)", output, re.M)
    return (installed.group(1) if installed else None, candidate.group(1) if candidate else None)


def parse_installed(output, native_arch):
    """dpkg-query `Package, Version, Status-Abbrev, Architecture` lines → {name: version}.

    Status-Abbrev is the desired action then the state: "ii" and a held "hi" are installed,
    "rc" (removed, config files left) is not."""
    versions = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) < 4 or fields[2][1:2] != "i" or not fields[1]:
            continue
        name, arch = fields[0], fields[3]
        key = name if arch in (native_arch, "all", "") else "%s:%s" % (name, arch)
        versions[key] = fields[1]
    return versions


def deb_filename(name, version, arch):
    """apt's file name in the cache: the epoch colon is written as %3a."""
    return "%s_%s_%s.deb" % (name, version.replace(":", "%3a"), arch)


class AptManager(PackageManager):
    name = "apt"
    link_options = ()

    def use_link(self, limit_kbps=0, relay=None):
        """Every later download (index refresh, staging, rollback material) goes at most
        `limit_kbps` KB/s and through `relay` when given."""
        self.link_options = tuple(thinlink.apt_options(limit_kbps, relay))

    def _run(self, argv, check=True, env=None):
        merged = dict(ENV)
        merged.update(env or {})
        rc, out, err = self.module.run_command(argv, environ_update=merged, check_rc=False)
        if check and rc != 0:
            raise CommandError("%s failed with rc=%s" % (argv[0], rc), cmd=argv, rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def bin(self, name):
        return self.module.get_bin_path(name, required=True)

    def refresh(self):
        # apt-get update exits 0 when a signature fails and it falls back to old lists;
        # --error-on=any (apt >= 2.1.16) turns that into a failure, as it must be
        self._run([self.bin("apt-get"), "-q", "--error-on=any"] + list(self.link_options) + ["update"])

    def installed_versions(self, names=None):
        """{name: version} of installed packages; a package of a foreign architecture is named
        `name:arch`, as apt-get prints it."""
        argv = [self.bin("dpkg-query"), "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\t${Architecture}\n"]
        if names:
            argv += list(names)
        # dpkg-query exits 1 when a named package is unknown; that is an answer, not a failure
        rc, out, err = self._run(argv, check=False)
        if rc not in (0, 1):
            raise CommandError("dpkg-query failed", cmd=argv, rc=rc, stdout=out, stderr=err)
        return parse_installed(out, self.arch())

    def source_packages(self):
        _rc, out, _err = self._run([self.bin("dpkg-query"), "-W", "-f", "${Package}\t${source:Package}\n"])
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def held_packages(self):
        _rc, out, _err = self._run([self.bin("apt-mark"), "showhold"])
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    def pending_updates(self):
        _rc, out, _err = self._run([self.bin("apt-get"), "-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade"])
        updates, removals = parse_simulation(out)
        sources = self.source_packages()
        listed = set(u["name"] for u in updates)
        for name in self.held_packages():
            if name in listed:
                continue
            _rc, policy, _err = self._run([self.bin("apt-cache"), "policy", name])
            installed, candidate = parse_policy_candidate(policy)
            if installed and candidate and installed not in ("(none)",) and candidate != installed:
                origins = self._policy_origins(policy, candidate)
                updates.append({"name": name, "installed": installed, "candidate": candidate, "arch": "",
                                "origins": origins, "security": is_security_origin(origins),
                                "new_install": False, "held": True})
        for update in updates:
            update["source"] = sources.get(update["name"]) or update["name"]
            update["new_packages"] = []
            update["removes"] = []
            update["required_by"] = []
        if removals or any(u["new_install"] for u in updates):
            # only then is it worth asking, per upgrade, what it pulls in or takes away
            by_name = dict((u["name"], u) for u in updates)
            for update in updates:
                if update["new_install"] or update["held"]:
                    continue
                _rc, sim, _err = self._run([self.bin("apt-get"), "-s", "-q", "-o", "Debug::NoLocking=1",
                                            "install", update["name"]])
                pulled, taken = parse_simulation(sim)
                update["new_packages"] = sorted(u["name"] for u in pulled if u["new_install"])
                update["removes"] = sorted(r["name"] for r in taken)
                for name in update["new_packages"]:
                    if name in by_name:
                        by_name[name]["required_by"].append(update["name"])
        for update in updates:
            update["needs_new_packages"] = bool(update["new_packages"])
        return sorted(updates, key=lambda u: u["name"]), removals

    @staticmethod
    def _policy_origins(policy, candidate):
        lines = policy.splitlines()
        for index, line in enumerate(lines):
            if re.match(r"^\s*(\*\*\*)?\s*%s\s+\d+" % re.escape(candidate), line):
                for follow in lines[index + 1:]:
                    match = re.match(r"^\s+\d+\s+\S+\s+(\S+)/\S+", follow)
                    if not match:
                        break
                    return [{"label": "", "suite": match.group(1)}]
        return []

    def compare_versions(self, left, right):
        """<0, 0, >0 as dpkg orders the two versions (epochs, ~, revisions)."""
        if left == right:
            return 0
        rc, _out, _err = self._run([self.bin("dpkg"), "--compare-versions", left, "gt", right], check=False)
        return 1 if rc == 0 else -1

    def reboot_required(self):
        """Every signal that says the host must reboot, and which one fired."""
        signals, details = [], {}
        packages = []
        if os.path.exists(REBOOT_REQUIRED + ".pkgs"):
            with open(REBOOT_REQUIRED + ".pkgs") as handle:
                packages = sorted(set(line.strip() for line in handle if line.strip()))
        if os.path.exists(REBOOT_REQUIRED):
            signals.append("reboot-required-file")
        kernel = hoststate.kernel_signal(os.uname()[2], hoststate.installed_kernels(), self.compare_versions)
        if kernel:
            signals.append(kernel["signal"])
            details["kernel"] = kernel
        needrestart = self.module.get_bin_path("needrestart")
        if needrestart:
            rc, out, _err = self._run([needrestart, "-b", "-r", "l"], check=False)
            if rc == 0:
                state = hoststate.parse_needrestart(out)
                details["needrestart"] = state
                if state["kernel_status"] in (2, 3):
                    signals.append("needrestart-kernel")
        return {"required": bool(signals), "packages": packages, "signals": signals, "details": details}

    def lock_holders(self):
        return hoststate.lock_holders(LOCK_FILES)

    def wait_for_lock(self, timeout):
        """Wait for the dpkg/apt locks; a clear failure naming the holder after `timeout` seconds."""
        holders, waited = hoststate.wait_for_unlocked(LOCK_FILES, timeout)
        if holders:
            who = ", ".join("pid %d (%s) holds %s" % (h["pid"], h["command"], h["file"]) for h in holders)
            raise CommandError("the dpkg lock is still held after %ss: %s" % (waited, who))
        return waited

    def health(self):
        """dpkg's database (`dpkg --audit`: nothing half-installed) and apt's dependency state
        (`apt-get check`: no unmet dependencies, which would make every later apt command fail)."""
        _rc, out, err = self._run([self.bin("dpkg"), "--audit"], check=False)
        text = (out + err).strip()
        rc, out, err = self._run([self.bin("apt-get"), "-q", "-o", "Debug::NoLocking=1", "check"], check=False)
        apt_check = {"ok": rc == 0, "output": "" if rc == 0 else (out + err).strip()}
        return {"clean": not text and apt_check["ok"], "output": text, "apt_check": apt_check}

    def arch(self):
        if not getattr(self, "_arch", None):
            _rc, out, _err = self._run([self.bin("dpkg"), "--print-architecture"])
            self._arch = out.strip()
        return self._arch

    def index_entries(self, wanted):
        """{name: {uri, filename, size, hash}} for each name=version of `wanted`: where apt really
        takes the file from (http://, https://, file:, copy: …) and the checksum the signed index
        gives for it (the strongest apt prints: SHA512, else SHA256)."""
        if not wanted:
            return {}
        argv = [self.bin("apt-get"), "-q", "--print-uris"] + list(self.link_options) + ["download"]
        _rc, out, _err = self._run(argv + ["%s=%s" % (n, v) for n, v in sorted(wanted.items())])
        found = {}
        for line in out.splitlines():
            match = re.match(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+) (?P<kind>[A-Za-z0-9]+):(?P<hash>[0-9a-f]+)$",
                             line.strip())
            if not match:
                continue
            parts = match.group("file")[:-len(".deb")].split("_")
            name, arch = parts[0], parts[-1]
            if arch not in (self.arch(), "all"):
                name = "%s:%s" % (name, arch)  # a foreign-architecture package, as apt-get names it
            found[name] = {"uri": match.group("uri"), "filename": match.group("file"), "size": int(match.group("size")),
                           "hash": "%s:%s" % (match.group("kind").lower(), match.group("hash"))}
        return found

    def cached_deb(self, name, version):
        """Path of the cached .deb for name=version, if apt has it (any architecture)."""
        pattern = os.path.join(ARCHIVES, "%s_%s_*.deb" % (glob.escape(name), glob.escape(version.replace(":", "%3a"))))
        found = sorted(glob.glob(pattern))
        return found[0] if found else None

    def deb_fields(self, path):
        _rc, out, _err = self._run([self.bin("dpkg-deb"), "-f", path, "Package", "Version"])
        fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        return fields.get("Package"), fields.get("Version")

    def _install_argv(self, lock_timeout, conffile_policy, allow_held):
        argv = [self.bin("apt-get"), "-q", "-y", "--no-install-recommends",
                "-o", "DPkg::Lock::Timeout=%d" % lock_timeout]
        if conffile_policy == "keep_local":
            argv += ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
        else:
            argv += ["-o", "Dpkg::Options::=--force-confnew"]
        if allow_held:
            argv.append("--allow-change-held-packages")
        return argv

    def download(self, wanted, lock_timeout=300):
        argv = self._install_argv(lock_timeout, "keep_local", True) + list(self.link_options)
        argv += ["--download-only", "install"]
        argv += ["%s=%s" % (name, version) for name, version in wanted.items()]
        self._run(argv)

    def download_to(self, wanted, directory):
        """Fetch every name=version of `wanted` from the repositories into `directory` with one
        apt-get call; False when any of them is gone (apt-get then fetches none)."""
        rc, _out, _err = self.module.run_command(
            [self.bin("apt-get"), "-q"] + list(self.link_options) + ["download"] + ["%s=%s" % (n, v) for n, v in sorted(wanted.items())],
            environ_update=dict(ENV), check_rc=False, cwd=directory)
        return rc == 0

    def sizes(self, wanted):
        """{name: bytes} of the .deb of each name=version, from one apt-cache call."""
        if not wanted:
            return {}
        _rc, out, _err = self._run([self.bin("apt-cache"), "show"] + ["%s=%s" % (n, v) for n, v in sorted(wanted.items())])
        found = {}
        for stanza in out.split("\n\n"):
            fields = dict(re.findall(r"^(Package|Version|Size): (.+)$", stanza, re.M))
            if wanted.get(fields.get("Package")) == fields.get("Version") and "Size" in fields:
                found[fields["Package"]] = int(fields["Size"])
        return found

    def repack(self, name, directory):
        self.module.get_bin_path("dpkg-repack", required=True)
        rc, out, err = self.module.run_command([self.bin("dpkg-repack"), name], environ_update=dict(ENV),
                                               check_rc=False, cwd=directory)
        if rc != 0:
            raise CommandError("dpkg-repack %s failed" % name, cmd=["dpkg-repack", name], rc=rc, stdout=out, stderr=err)

    def repair_interrupted(self):
        """`dpkg --configure -a` when dpkg --audit reports half-configured packages."""
        state = self.health()
        if state["clean"]:
            return None
        rc, out, err = self._run([self.bin("dpkg"), "--force-confdef", "--force-confold", "--configure", "-a"],
                                 check=False)
        return {"before": state["output"], "rc": rc, "output": (out + err).strip()}

    def install(self, wanted, allow_held=False, lock_timeout=300, conffile_policy="keep_local"):
        argv = self._install_argv(lock_timeout, conffile_policy, allow_held) + ["install"]
        argv += ["%s=%s" % (name, version) for name, version in wanted.items()]
        return self._run(argv, check=False)

    def install_files(self, paths, conffile_policy="keep_local"):
        """dpkg -i of saved .deb files: exact versions, downgrades included, no resolver."""
        argv = [self.bin("dpkg")]
        if conffile_policy == "keep_local":
            argv += ["--force-confdef", "--force-confold"]
        else:
            argv += ["--force-confnew"]
        return self._run(argv + ["--install"] + list(paths), check=False)

    def restore(self, files, remove, lock_timeout=300, conffile_policy="keep_local", simulate=False):
        """One apt-get call that installs the saved `.deb` files (downgrades allowed) and removes
        `remove`: apt orders the downgrades as dpkg needs them (Pre-Depends, exact-version Depends
        between the binaries of one source, essential packages). `simulate` only plans it.
        --fix-broken lets apt also finish a host that an earlier, failed downgrade left with unmet
        dependencies; the caller checks the plan holds nothing but the rollback."""
        argv = self._install_argv(lock_timeout, conffile_policy, True) + ["--allow-downgrades", "--fix-broken"]
        if simulate:
            argv += ["-s", "-o", "Debug::NoLocking=1"]
        argv += ["install"] + [os.path.abspath(f) for f in files] + ["%s-" % n for n in remove]
        return self._run(argv, check=False)

    def remove(self, names):
        """dpkg --remove: refuses (rather than cascades) when another package depends on one."""
        return self._run([self.bin("dpkg"), "--remove"] + list(names), check=False)
