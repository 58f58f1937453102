"""Every stage is also a plain playbook: ansible-playbook works without the orchestrator."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ansible, installed_versions, podman_exec


def test_scan_playbook_runs_with_plain_ansible_playbook(lab) -> None:  # type: ignore[no-untyped-def]
    proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/scan.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for host in lab.hosts():
        assert f"{host.name} " in proc.stdout and "failed=0" in proc.stdout


def test_stage_deploy_confirm_playbooks_with_a_hand_written_manifest(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = next(h for h in lab.hosts() if h.name == "db1")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cycle_id": "it-plain", "hosts": {host.name: {"packages": ["pw-kernel=6.1.0-2"]}}}))
    assert installed_versions(host.container)["pw-kernel"] == "6.1.0-1"
    booted = podman_exec(host.container, "cut", "-d", " ", "-f22", "/proc/1/stat")
    for playbook in ("stage", "deploy", "confirm"):
        proc = ansible("ansible-playbook", "-i", "inventories/lab/hosts.yml", f"playbooks/{playbook}.yml",
                       "-l", host.name, "-e", f"patchwave_manifest_file={manifest}")
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert installed_versions(host.container)["pw-kernel"] == "6.1.0-2"
    # pw-kernel asks for a reboot: the deploy role rebooted the host, which cleared the request
    assert podman_exec(host.container, "cut", "-d", " ", "-f22", "/proc/1/stat") != booted
    assert podman_exec(host.container, "sh", "-c", "test -e /run/reboot-required && echo yes || echo no").strip() == "no"
