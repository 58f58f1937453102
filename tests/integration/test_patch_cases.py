"""The hard cases of patching, on one host of each release (Debian 11, 12 and 13), through the
playbooks users run. Every claim is read back inside the container, not taken from Ansible."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import installed_versions, lab_service_answer, podman_exec, run_module, run_playbook

from patchwave.lab import catalog

HOSTS = ["ws2", "db2", "web2"]  # Debian 11, 12, 13
# every security update but the held one: a reboot request, a new dependency, a changed conffile,
# the Pre-Depends chain pw-base (essential) -> pw-pam-modules -> pw-pam-modules-bin (= version)
SECURITY_NAMES = tuple(catalog.security_updates("bookworm"))


def security(release: str) -> list[str]:
    return [f"{name}={version}" for name, version in catalog.security_updates(release).items()]


@pytest.fixture(params=HOSTS)
def host(request, lab):  # type: ignore[no-untyped-def]
    return next(h for h in lab.hosts() if h.name == request.param)


def manifest(tmp_path: Path, cycle: str, host: str, packages: list[str]) -> dict[str, object]:
    path = tmp_path / f"{cycle}.json"
    path.write_text(json.dumps({"cycle_id": cycle, "hosts": {host: {"packages": packages}}}))
    return {"patchwave_manifest_file": str(path)}


def changed(stats: dict[str, dict[str, int]], host: str) -> int:
    return stats.get("changed", {}).get(host, 0)


def boot_id(container: str) -> str:
    return podman_exec(container, "cut", "-d", " ", "-f22", "/proc/1/stat").strip()


def dpkg_audit(container: str) -> str:
    return podman_exec(container, "dpkg", "--audit").strip()


def test_check_mode_changes_nothing(host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    libssl = catalog.installed_version("pw-libssl", host.release)
    assert installed_versions(host.container)["pw-libssl"] == libssl
    before = installed_versions(host.container)
    extra = manifest(tmp_path, "it-check", host.name, security(host.release))
    for playbook in ("scan.yml", "stage.yml", "deploy.yml", "confirm.yml"):
        status, _stats, _results = run_playbook(playbook, host.name, extra, check=True)
        assert status == "successful", playbook
    assert installed_versions(host.container) == before
    assert "pw-libssl_" not in podman_exec(host.container, "ls", "/var/cache/apt/archives")
    assert podman_exec(host.container, "sh", "-c", "ls /var/lib/patchwave 2>/dev/null | wc -l").strip() == "0"


def test_failing_postinst_is_reported_and_rolled_back_exactly(host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    new_libssl = catalog.update_version("pw-libssl", host.release)
    extra = manifest(tmp_path, "it-fail", host.name, ["pw-agent=1.1-1", f"pw-libssl={new_libssl}"])
    assert run_playbook("stage.yml", host.name, extra)[0] == "successful"
    status, _stats, results = run_playbook("deploy.yml", host.name, extra)
    assert status == "failed"
    failure = results["patchwave.endpoint.apply_updates"]
    assert failure["failed"] is True
    assert "cannot migrate state" in str(failure.get("stdout", "")) + str(failure.get("stderr", ""))
    assert "pw-agent" in dpkg_audit(host.container)  # half-configured: the failure is real

    extra_rb = {"patchwave_cycle_id": "it-fail"}
    status, stats, results = run_playbook("rollback.yml", host.name, extra_rb)
    assert status == "successful", results
    versions = installed_versions(host.container)
    assert (versions["pw-agent"], versions["pw-libssl"]) == ("1.0-1", catalog.installed_version("pw-libssl", host.release))
    assert dpkg_audit(host.container) == ""
    status, _stats, results = run_playbook("confirm.yml", host.name, extra)
    assert results["patchwave.endpoint.pending_updates"]["confirmation"]["state"] == "rolled-back"  # type: ignore[index]
    status, stats, _results = run_playbook("rollback.yml", host.name, extra_rb)
    assert status == "successful" and changed(stats, host.name) == 0


def test_waits_for_the_dpkg_lock_then_names_the_holder(host) -> None:  # type: ignore[no-untyped-def]
    holder = subprocess.Popen(
        ["podman", "exec", host.container, "python3", "-c",
         "import fcntl,time; f=open('/var/lib/dpkg/lock-frontend','w'); fcntl.lockf(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = run_module(host.name, "patchwave.endpoint.apply_updates",
                            {"packages": ["pw-tzdata=2026b-1"], "lock_timeout": 3})
        assert result["failed"] is True
        message = str(result["msg"])
        assert "still held after" in message and "python3" in message and "/var/lib/dpkg/lock-frontend" in message
        assert installed_versions(host.container)["pw-tzdata"] == "2026a-1"
    finally:
        holder.kill()
        holder.wait()
        podman_exec(host.container, "pkill", "-f", "fcntl.lockf")


def test_interrupted_dpkg_is_repaired_before_installing(host) -> None:  # type: ignore[no-untyped-def]
    podman_exec(host.container, "sh", "-c", "cd /tmp && apt-get -q download pw-tzdata=2026b-1 && "
                "dpkg --unpack /tmp/pw-tzdata_2026b-1_all.deb")
    assert "pw-tzdata" in dpkg_audit(host.container)  # unpacked, not configured
    result = run_module(host.name, "patchwave.endpoint.apply_updates", {"packages": ["pw-tzdata=2026b-1"]})
    assert result["failed"] is False, result.get("msg")
    assert "pw-tzdata" in result["repaired"]["before"]  # type: ignore[index]
    assert dpkg_audit(host.container) == ""
    assert installed_versions(host.container)["pw-tzdata"] == "2026b-1"


def test_security_cycle_with_reboot_new_dependency_hold_and_conffile(host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    extra = manifest(tmp_path, "it-main", host.name, security(host.release))
    booted = boot_id(host.container)
    for playbook in ("stage.yml", "deploy.yml"):
        status, _stats, results = run_playbook(playbook, host.name, extra)
        assert status == "successful", (playbook, results)
    versions = installed_versions(host.container)
    for spec in security(host.release):
        name, version = spec.split("=")
        assert versions[name] == version
    assert versions["pw-pinned"] == "1.0-1"  # held: untouched
    assert "edited by the lab admin" in podman_exec(host.container, "cat", "/etc/pw-config/pw.conf")
    assert boot_id(host.container) != booted  # pw-kernel asked for a reboot: it really happened
    assert lab_service_answer(host.container) == f"pw-libssl {catalog.update_version('pw-libssl', host.release)}\n"
    status, _stats, results = run_playbook("confirm.yml", host.name, extra)
    confirmation = results["patchwave.endpoint.pending_updates"]["confirmation"]
    assert confirmation["state"] == "patched", confirmation  # type: ignore[index]

    for playbook in ("scan.yml", "stage.yml", "deploy.yml", "confirm.yml"):  # a second run changes nothing
        status, stats, _results = run_playbook(playbook, host.name, extra)
        assert status == "successful" and changed(stats, host.name) == 0, playbook

    rebooted = boot_id(host.container)
    status, _stats, results = run_playbook("rollback.yml", host.name, {"patchwave_cycle_id": "it-main"})
    assert status == "successful", results
    versions = installed_versions(host.container)
    # exactly the versions from before: through the Pre-Depends chain at exact versions, the
    # essential package included, and the package the cycle newly installed removed again
    assert {name: versions.get(name) for name in SECURITY_NAMES} == {
        name: None if name == "pw-tools-common" else catalog.installed_version(name, host.release)
        for name in SECURITY_NAMES}
    assert dpkg_audit(host.container) == ""
    podman_exec(host.container, "apt-get", "check")  # raises unless every dependency is met
    assert boot_id(host.container) == rebooted  # the old kernel stand-in asks for no reboot
    # the rollback replaced the library again: the service was restarted onto the old one
    assert lab_service_answer(host.container) == f"pw-libssl {catalog.installed_version('pw-libssl', host.release)}\n"
