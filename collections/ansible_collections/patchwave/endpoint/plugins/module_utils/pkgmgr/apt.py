# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""apt/dpkg backend. Works without python3-apt: it drives apt-get, apt-mark and dpkg-query.

The only module_util that knows apt and dpkg: their commands, their output, their files
(the package cache, the locks, the status database, /var/run/reboot-required, .deb files)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from urllib.parse import unquote, urlsplit

from ansible_collections.patchwave.endpoint.plugins.module_utils import changelog, hoststate
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import CommandError, PackageManager, tail

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
# dpkg's database of installed packages, which the baseline reads without running dpkg
STATUS = "/var/lib/dpkg/status"

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


def link_options(limit_kbps, relay):
    """apt-get `-o` arguments for a thin link: a rate limit (KB/s) and the relay as http proxy."""
    options = []
    if limit_kbps:
        options += ["-o", "Acquire::http::Dl-Limit=%d" % limit_kbps, "-o", "Acquire::https::Dl-Limit=%d" % limit_kbps]
    if relay:
        options += ["-o", "Acquire::http::Proxy=%s" % relay]
    return options


def parse_status(lines):
    """dpkg's status file (its lines) → {name: version} of installed packages (also held ones)."""
    installed, name, version, status = {}, None, None, ""
    for line in (lines or []) + [""]:
        if not line.strip():
            if name and status.split()[-1:] == ["installed"]:
                installed[name] = version
            name, version, status = None, None, ""
        elif line.startswith("Package:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Version:"):
            version = line.split(":", 1)[1].strip()
        elif line.startswith("Status:"):
            status = line.split(":", 1)[1].strip()
    return installed


def parse_owners(output):
    """`dpkg -S` output → the names of the owning packages (architecture dropped, diversions skipped)."""
    owners = set()
    for line in output.splitlines():
        names, sep, _rest = line.partition(": ")
        if sep and not line.startswith("diversion by "):
            owners.update(name.strip().split(":")[0] for name in names.split(","))
    return owners


def _package_names(text):
    """The package names of a Depends/Provides field (versions, architectures and
    alternatives' bars dropped; every alternative counts)."""
    names = []
    for item in re.split(r"[,|]", text):
        name = re.split(r"[\s(:]", item.strip(), maxsplit=1)[0]
        if name:
            names.append(name)
    return names


# what dependency_closure reads: one line per package of the database
DEPENDENCY_LISTING = "${db:Status-Abbrev}\t${Package}\t${Essential}\t${Provides}\t${Pre-Depends}\t${Depends}\n"


def dependency_closure(listing, roots):
    """The installed packages `roots` and the Essential ones (coreutils, dash: Ansible's mkdir
    and sh, never named as a dependency) need: their Pre-Depends and Depends, through every
    alternative and every provider of a virtual package, recursively. `listing` is `dpkg-query
    -W -f '${db:Status-Abbrev}\\t${Package}\\t${Essential}\\t${Provides}\\t${Pre-Depends}\\t${Depends}\\n'`."""
    depends, providers, essential = {}, {}, []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) < 6 or fields[0][1:2] in ("", "n", "c"):  # not installed, or only its conffiles left
            continue
        depends[fields[1]] = _package_names(fields[4] + "," + fields[5])
        for virtual in _package_names(fields[3]):
            providers.setdefault(virtual, []).append(fields[1])
        if fields[2] == "yes":
            essential.append(fields[1])
    needed, todo = set(), list(roots) + essential
    while todo:
        name = todo.pop()
        for package in ([name] if name in depends else []) + providers.get(name, []):
            if package not in needed:
                needed.add(package)
                todo.extend(depends[package])
    return needed


class AptManager(PackageManager):
    name = "apt"
    commands = ("apt-get", "dpkg")
    link_options = ()
    installer = "dpkg"
    front_end = "apt-get"
    repair_command = "dpkg --configure -a"
    repair_hint = "apt-get -f install"
    owner_query = "dpkg -S"
    noninteractive_env = {"DEBIAN_FRONTEND": "noninteractive"}
    status_file = STATUS

    @classmethod
    def present(cls, module):
        return all(module.get_bin_path(command) for command in cls.commands)

    @property
    def cache_dir(self):
        return ARCHIVES

    def use_link(self, limit_kbps=0, relay=None):
        """Every later download (index refresh, staging, rollback material) goes at most
        `limit_kbps` KB/s and through `relay` when given."""
        self.link_options = tuple(link_options(limit_kbps, relay))

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

    def health_text(self, health):
        if health["clean"]:
            return "dpkg --audit and apt-get check pass"
        parts = []
        if health["output"]:
            parts.append("dpkg --audit: %s" % tail(health["output"]))
        if not health.get("apt_check", {}).get("ok", True):
            parts.append("apt-get check: %s" % tail(health["apt_check"]["output"]))
        return "; ".join(parts)

    def health_problem(self, health):
        if health["output"]:
            return "dpkg --audit", health["output"]
        return "apt-get check", health["apt_check"]["output"]

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

    def cached_package(self, name, version):
        """Path of the cached .deb for name=version, if apt has it (any architecture)."""
        pattern = os.path.join(ARCHIVES, "%s_%s_*.deb" % (glob.escape(name), glob.escape(version.replace(":", "%3a"))))
        found = sorted(glob.glob(pattern))
        return found[0] if found else None

    cached_deb = cached_package

    def package_fields(self, path):
        _rc, out, _err = self._run([self.bin("dpkg-deb"), "-f", path, "Package", "Version"])
        fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        return fields.get("Package"), fields.get("Version")

    deb_fields = package_fields

    def changelog(self, path, name, installed_version):
        """The .deb's own Debian changelog (changelog.from_deb, dpkg's version order)."""
        return changelog.from_deb(self.module, path, name, installed_version)

    def stage_local(self, entry, name, version):
        """Copy a `file:` repository's package into apt's cache under the name apt gives it there
        (epoch as %3a), so the window only installs even if the repository's mount is gone by then."""
        source = unquote(urlsplit(entry["uri"]).path)
        arch = entry["filename"].rsplit("_", 1)[-1][:-len(".deb")]
        target = os.path.join(ARCHIVES, deb_filename(name, version, arch))
        fd, tmp = tempfile.mkstemp(dir=os.path.join(ARCHIVES, "partial"), prefix=".patchwave-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o644)
            os.rename(tmp, target)
        except (IOError, OSError):
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return target

    def save_rollback(self, versions, directory):
        """Keep the installed version's .deb of every package: copied from apt's cache, else fetched
        from the repositories (one apt-get call for all), else rebuilt from the system (dpkg-repack).
        Each file is checked to hold exactly that name=version."""
        saved, fetch = {}, {}
        for name, version in sorted(versions.items()):
            cached = self.cached_package(name, version)
            if cached:
                target = os.path.join(directory, os.path.basename(cached))
                shutil.copy2(cached, target)
                saved[name] = dict(before=version, file=target, method="cache")
            else:
                fetch[name] = version
        if fetch and not self.download_to(fetch, directory):
            # one of them is gone from the repositories: fetch one by one, repack what is missing
            for name, version in sorted(fetch.items()):
                self.download_to({name: version}, directory)
        for name, version in sorted(fetch.items()):
            found = self.find_deb(directory, name, version)
            method = "repository"
            if not found:
                before = set(os.listdir(directory))
                self.repack(name, directory)
                new = sorted(set(os.listdir(directory)) - before)
                if not new:
                    raise CommandError("dpkg-repack produced no package for %s=%s" % (name, version))
                found, method = os.path.join(directory, new[0]), "dpkg-repack"
            saved[name] = dict(before=version, file=found, method=method)
        for name, entry in saved.items():
            got = self.package_fields(entry["file"])
            if got != (name, entry["before"]):
                raise CommandError("rollback file %s holds %s=%s, not %s=%s"
                                   % (entry["file"], got[0], got[1], name, entry["before"]))
        return saved

    def find_deb(self, directory, name, version):
        """The .deb of name=version in `directory`, whatever apt named it: `apt-get download` writes
        an epoch as %3a from an http source, but keeps the pool's name (no epoch) from a file: one."""
        for candidate in sorted(f for f in os.listdir(directory) if f.startswith(name + "_") and f.endswith(".deb")):
            path = os.path.join(directory, candidate)
            if self.package_fields(path) == (name, version):
                return path
        return None

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

    def restore_plan(self, files, remove, lock_timeout=300):
        rc, out, err = self.restore(files, remove, lock_timeout=lock_timeout, simulate=True)
        installs, removals = parse_simulation(out)
        return rc, out, err, [(u["name"], u["candidate"]) for u in installs], [r["name"] for r in removals]

    def remove(self, names):
        """dpkg --remove: refuses (rather than cascades) when another package depends on one."""
        return self._run([self.bin("dpkg"), "--remove"] + list(names), check=False)

    # --- the baseline: no module, every command through the caller's run(argv, timeout) -----
    def installed_from_status(self, lines):
        return parse_status(lines(STATUS))

    def file_owners(self, run, paths):
        """`dpkg -S` of every path at once; rc 1 only says that some path belongs to no package."""
        argv = ["dpkg", "-S"] + list(paths)
        rc, out, err = run(argv, 30)
        if rc not in (0, 1):
            raise CommandError("dpkg -S failed", cmd=argv, rc=rc, stdout=out, stderr=err)
        return parse_owners(out)

    def needed_packages(self, run, roots):
        """dependency_closure() over one `dpkg-query` listing of the whole database."""
        argv = ["dpkg-query", "-W", "-f", DEPENDENCY_LISTING]
        try:
            rc, out, err = run(argv, 60)
        except Exception as exc:
            rc, out, err = -1, "", str(exc)
        if rc != 0:
            raise CommandError("dpkg-query failed: %s" % (err or out).strip()[-500:], cmd=argv, rc=rc, stdout=out,
                               stderr=err)
        return dependency_closure(out, roots)

    def is_installed(self, run, name):
        """dpkg's status of `name` is installed ("ii") or held and installed ("hi")."""
        rc, out, _err = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name], 30)
        return rc == 0 and (out.startswith("ii") or out.startswith("hi"))

    def removal_plan(self, run, name):
        argv = ["apt-get", "-s", "-o", "Debug::NoLocking=1", "remove", name]
        rc, out, err = run(argv, 120)
        if rc != 0:
            raise CommandError("apt-get -s remove %s failed" % name, cmd=argv, rc=rc, stdout=out, stderr=err)
        return re.findall(r"^Remv (\S+)", out, re.MULTILINE)

    def remove_command(self, name):
        return ["apt-get", "-y", "-q", "remove", name]
