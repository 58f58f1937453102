"""Every stage is also a plain playbook: ansible-playbook works without the orchestrator."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ansible, installed_versions, lab_service_answer, podman_exec, run_module, run_playbook

from patchwave.lab import catalog


def test_scan_playbook_runs_with_plain_ansible_playbook(lab) -> None:  # type: ignore[no-untyped-def]
    proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/scan.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for host in lab.hosts():
        assert f"{host.name} " in proc.stdout and "failed=0" in proc.stdout


def test_stage_deploy_confirm_playbooks_with_a_hand_written_manifest(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = next(h for h in lab.hosts() if h.name == "db1")
    manifest = tmp_path / "manifest.json"
    old, new = (catalog.installed_version("pw-kernel", host.release), catalog.update_version("pw-kernel", host.release))
    manifest.write_text(json.dumps({"cycle_id": "it-plain", "hosts": {host.name: {"packages": [f"pw-kernel={new}"]}}}))
    assert installed_versions(host.container)["pw-kernel"] == old
    booted = podman_exec(host.container, "cut", "-d", " ", "-f22", "/proc/1/stat")
    for playbook in ("stage", "deploy", "confirm"):
        proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", f"playbooks/{playbook}.yml",
                       "-l", host.name, "-e", f"patchwave_manifest_file={manifest}")
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert installed_versions(host.container)["pw-kernel"] == new
    # pw-kernel asks for a reboot: the deploy role rebooted the host, which cleared the request
    assert podman_exec(host.container, "cut", "-d", " ", "-f22", "/proc/1/stat") != booted
    assert podman_exec(host.container, "sh", "-c", "test -e /run/reboot-required && echo yes || echo no").strip() == "no"


def test_health_probes_pass_and_fail_on_a_host(lab) -> None:  # type: ignore[no-untyped-def]
    host = next(h for h in lab.hosts() if h.name == "ws1")
    good = [{"port": 22}]
    proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/health.yml", "-l", host.name,
                   "-e", json.dumps({"health_checks": good}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Host answers" in proc.stdout and "Ports accept connections" in proc.stdout
    # nothing listens on port 9 and the unit does not exist: each probe fails the host on its own
    for bad in ({"port": 9}, {"service": "pw-no-such-unit"}, {"http": "http://127.0.0.1:9/", "status": 200}):
        proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/health.yml", "-l", host.name,
                       "-e", json.dumps({"health_checks": [bad], "health_timeout": 2}), check=False)
        assert proc.returncode == 2 and "failed=1" in proc.stdout, (bad, proc.stdout[-2000:])
    # no probes at all: the host must still answer
    proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/health.yml", "-l", host.name)
    assert proc.returncode == 0 and "ok=2" in proc.stdout and "skipped=3" in proc.stdout, proc.stdout[-2000:]


def test_restart_never_reports_the_service_on_replaced_code_and_a_restart_clears_it(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = next(h for h in lab.hosts() if h.name == "db1")  # Debian 11: its own pw-libssl fix
    old, new = (catalog.installed_version("pw-libssl", host.release), catalog.update_version("pw-libssl", host.release))
    pid = podman_exec(host.container, "cat", "/run/pw-httpd.pid").strip()
    assert lab_service_answer(host.container) == f"pw-libssl {old}\n"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cycle_id": "it-restart", "hosts": {host.name: {"packages": [f"pw-libssl={new}"]}}}))
    extra = {"patchwave_manifest_file": str(manifest), "deploy_restart_policy": "never"}
    for playbook in ("stage.yml", "deploy.yml"):
        status, _stats, results = run_playbook(playbook, host.name, extra)
        assert status == "successful", (playbook, results)
    assert installed_versions(host.container)["pw-libssl"] == new
    # nobody restarted it: the same process, still answering from the library it mapped at start
    assert podman_exec(host.container, "cat", "/run/pw-httpd.pid").strip() == pid
    assert lab_service_answer(host.container) == f"pw-libssl {old}\n"
    _status, _stats, results = run_playbook("confirm.yml", host.name, extra)
    confirmation = results["patchwave.endpoint.pending_updates"]["confirmation"]
    assert confirmation["state"] == "patched-pending-restart", confirmation  # type: ignore[index]
    assert "pw-httpd" in confirmation["detail"], confirmation  # type: ignore[index]

    restarted = run_module(host.name, "patchwave.endpoint.restart_services", {"restart": "services"})
    assert restarted["failed"] is False and restarted["restarted"] == ["pw-httpd"], restarted
    assert podman_exec(host.container, "cat", "/run/pw-httpd.pid").strip() != pid
    assert lab_service_answer(host.container) == f"pw-libssl {new}\n"
    _status, _stats, results = run_playbook("confirm.yml", host.name, extra)
    assert results["patchwave.endpoint.pending_updates"]["confirmation"]["state"] == "patched"  # type: ignore[index]
