"""The lab is real: containers, loopback sshd with checked host keys, a signed repository,
hosts at the old versions, real reboots."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, ansible, installed_versions, lab_service_answer, podman_exec

from patchwave.lab import catalog

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")


def patchwave(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PATCHWAVE, *args], capture_output=True, text=True, cwd=ROOT, check=False)


def test_status_json_lists_every_host(lab) -> None:  # type: ignore[no-untyped-def]
    proc = patchwave("lab", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["up"] is True
    hosts = status["hosts"]
    assert len(hosts) == 6
    for host in hosts:
        assert {"name", "container", "release", "ssh_port", "groups", "device_type", "owner"} <= set(host)
        assert host["state"] == "running"
    assert {h["release"] for h in hosts} == {"bullseye", "bookworm", "trixie"}


def test_second_up_changes_nothing_and_is_fast(lab) -> None:  # type: ignore[no-untyped-def]
    inventory = (ROOT / "inventories/lab/hosts.yml").read_text()
    started = time.monotonic()
    proc = patchwave("lab", "up", "--json")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["changed"] is False, result["changes"]
    assert elapsed < 60
    assert (ROOT / "inventories/lab/hosts.yml").read_text() == inventory


def test_asking_for_another_size_while_up_is_refused(lab) -> None:  # type: ignore[no-untyped-def]
    proc = patchwave("lab", "up", "--hosts", "3")
    assert proc.returncode == 2
    assert "already up with 6 hosts" in proc.stderr


def _ssh(lab, host, known_hosts: Path) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "IdentitiesOnly=yes", "-i", str(lab.ssh_key), "-p", str(host.ssh_port), "patchwave@127.0.0.1",
         "true"], capture_output=True, text=True, timeout=30, check=False)


def test_host_keys_are_checked(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = lab.hosts()[0]
    assert _ssh(lab, host, lab.known_hosts).returncode == 0
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    refused = _ssh(lab, host, empty)
    assert refused.returncode != 0
    assert "Host key verification failed" in refused.stderr


def test_hosts_start_at_the_old_versions_with_a_hold_and_an_edited_conffile(lab) -> None:  # type: ignore[no-untyped-def]
    for host in lab.hosts():
        versions = installed_versions(host.container)
        ours = {name: version for name, version in versions.items() if name.startswith("pw-")}
        assert ours == dict(spec.split("=") for spec in catalog.base_install(host.release)), host.name
        assert versions["pw-tools"] == "1.0-1"
        assert "pw-tools-common" not in versions
        assert podman_exec(host.container, "apt-mark", "showhold").split() == ["pw-pinned"]
        assert "edited by the lab admin" in podman_exec(host.container, "cat", "/etc/pw-config/pw.conf")


def _candidates(container: str) -> dict[str, str]:
    out = podman_exec(container, "sh", "-c", "apt-get -qq -s dist-upgrade | grep ^Inst")
    # "Inst pw-libssl [1.0-1] (1.0-2 Patchwave Lab Security:patchwave-lab-bookworm-security [all])"
    return {line.split()[1]: line.split("(", 1)[1].split()[0] for line in out.splitlines()}


def test_each_release_has_its_own_versions_a_pre_depends_chain_and_an_essential_package(lab) -> None:  # type: ignore[no-untyped-def]
    by_release = {}
    for host in lab.hosts():
        by_release.setdefault(host.release, _candidates(host.container))
    assert set(by_release) == {"bullseye", "bookworm", "trixie"}
    libssl = {release: pending["pw-libssl"] for release, pending in by_release.items()}
    assert libssl == {"bullseye": "0.9.8-5+deb11u1", "bookworm": "1.0-2", "trixie": "1.1-1+deb13u1"}
    assert len({pending["pw-pam-modules"] for pending in by_release.values()}) == 3
    host = lab.hosts()[0]
    fields = podman_exec(host.container, "dpkg-query", "-W", "-f", "${Package}|${Essential}|${Pre-Depends}|${Source}\\n",
                         "pw-base", "pw-pam-modules")
    rows = {line.split("|")[0]: line.split("|")[1:] for line in fields.strip().splitlines()}
    pam = catalog.installed_version("pw-pam-modules", host.release)
    assert rows["pw-base"] == ["yes", f"pw-pam-modules (>= {pam})", ""]
    # exactly its own version, and the source package's name differs from the binary's
    assert rows["pw-pam-modules"][1:] == [f"pw-pam-modules-bin (= {pam})", "pw-pam"]
    # dpkg itself refuses to remove an essential package
    refused = subprocess.run(["podman", "exec", host.container, "dpkg", "--remove", "--dry-run", "pw-base"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "essential" in refused.stdout + refused.stderr


def test_repository_signature_is_enforced(lab) -> None:  # type: ignore[no-untyped-def]
    host = lab.hosts()[-1]
    keyring = "/etc/apt/keyrings/patchwave-lab.gpg"
    podman_exec(host.container, "mv", keyring, keyring + ".away")
    try:
        proc = subprocess.run(["podman", "exec", host.container, "apt-get", "--error-on=any", "update"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode != 0
        assert "NO_PUBKEY" in proc.stdout + proc.stderr or "signature verification failed" in proc.stdout + proc.stderr
    finally:
        podman_exec(host.container, "mv", keyring + ".away", keyring)
    podman_exec(host.container, "apt-get", "-q", "update")


def test_reboot_really_restarts_the_host(lab) -> None:  # type: ignore[no-untyped-def]
    host = lab.hosts()[4]
    before = podman_exec(host.container, "cut", "-d", " ", "-f22", "/proc/1/stat").strip()
    podman_exec(host.container, "touch", "/run/reboot-required", "/var/tmp/survives")
    proc = ansible("ansible", host.name, "-i", "inventories/lab/hosts.yml", "-b", "-m", "ansible.builtin.include_role",
                   "-a", "name=patchwave.endpoint.reboot")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = podman_exec(host.container, "cut", "-d", " ", "-f22", "/proc/1/stat").strip()
    assert after != before
    assert podman_exec(host.container, "ls", "/var/tmp/survives").strip() == "/var/tmp/survives"
    # the lab's service came back with the host, on the library it has installed
    assert lab_service_answer(host.container) == f"pw-libssl {catalog.installed_version('pw-libssl', host.release)}\n"
    gone = subprocess.run(["podman", "exec", host.container, "test", "-e", "/run/reboot-required"], check=False)
    assert gone.returncode == 1  # /run is a tmpfs, as on a real host


def test_down_removes_everything_and_up_from_cached_images_is_fast(lab) -> None:  # type: ignore[no-untyped-def]
    containers = [h.container for h in lab.hosts()]
    proc = patchwave("lab", "down", "--json")
    assert proc.returncode == 0, proc.stderr
    for name in containers:
        gone = subprocess.run(["podman", "container", "exists", name], check=False)
        assert gone.returncode == 1, name
    assert subprocess.run(["podman", "network", "exists", lab.network], check=False).returncode == 1
    assert not lab.dir.exists()
    assert not (ROOT / "inventories/lab/hosts.yml").exists()
    assert patchwave("lab", "status", "--json").stdout.count('"hosts": []') == 1

    started = time.monotonic()
    proc = patchwave("lab", "up", "--json")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert not any("building image" in c for c in json.loads(proc.stdout)["changes"])
    assert elapsed < 60, f"lab up from cached images took {elapsed:.1f}s"
