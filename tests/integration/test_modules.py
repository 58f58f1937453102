"""The patch modules on real lab hosts; every claim is checked inside the container with dpkg."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import ROOT, installed_versions, podman_exec, run_module


@pytest.fixture(scope="module")
def host(lab) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A Debian 12 workstation; left healthy for the end-to-end test that follows. The versions
    written below are Debian 12's (patchwave.lab.catalog; test_lab checks them against it)."""
    chosen = next(h for h in lab.hosts() if h.name == "ws1")
    yield chosen
    # undo the failed-postinst test so dpkg is healthy again
    podman_exec(chosen.container, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y",
                "--allow-downgrades", "install", "pw-agent=1.0-1")


def test_pending_updates_reports_every_hard_case(host) -> None:  # type: ignore[no-untyped-def]
    result = run_module(host.name, "patchwave.endpoint.pending_updates", {})
    assert result["failed"] is False and result["changed"] is False
    updates = {u["name"]: u for u in result["updates"]}  # type: ignore[attr-defined]
    assert updates["pw-libssl"]["installed"] == "1.0-1" and updates["pw-libssl"]["candidate"] == "1.0-2"
    assert updates["pw-libssl"]["security"] is True
    assert updates["pw-tzdata"]["security"] is False
    assert updates["pw-pinned"]["held"] is True
    assert updates["pw-tools-common"]["new_install"] is True
    assert updates["pw-tools-common"]["required_by"] == ["pw-tools"]
    assert updates["pw-tools"]["new_packages"] == ["pw-tools-common"]
    assert result["dpkg"] == {"clean": True, "output": "", "apt_check": {"ok": True, "output": ""}, "lock_holders": []}
    assert result["reboot_required"]["required"] is False


def test_pending_updates_in_check_mode(host) -> None:  # type: ignore[no-untyped-def]
    result = run_module(host.name, "patchwave.endpoint.pending_updates", {"update_cache": False}, check=True)
    assert result["failed"] is False
    assert any(u["name"] == "pw-libssl" for u in result["updates"])  # type: ignore[attr-defined]


def test_pending_updates_fails_when_the_repository_signature_cannot_be_checked(host) -> None:  # type: ignore[no-untyped-def]
    keyring = "/etc/apt/keyrings/patchwave-lab.gpg"
    podman_exec(host.container, "mv", keyring, keyring + ".away")
    try:
        result = run_module(host.name, "patchwave.endpoint.pending_updates", {})
    finally:
        podman_exec(host.container, "mv", keyring + ".away", keyring)
    assert result["failed"] is True
    assert "NO_PUBKEY" in str(result.get("stdout", "")) + str(result.get("stderr", ""))


def test_stage_check_mode_then_real_then_idempotent(host) -> None:  # type: ignore[no-untyped-def]
    args = {"cycle_id": "it-stage", "packages": ["pw-libssl=1.0-2", "pw-tools=2.0-1", "pw-tools-common=2.0-1"]}
    planned = run_module(host.name, "patchwave.endpoint.stage_updates", args, check=True)
    assert planned["changed"] is True
    assert "pw-libssl_1.0-2_all.deb" not in podman_exec(host.container, "ls", "/var/cache/apt/archives")
    first = run_module(host.name, "patchwave.endpoint.stage_updates", args)
    assert first["failed"] is False and first["changed"] is True
    cache = podman_exec(host.container, "ls", "/var/cache/apt/archives").split()
    assert {"pw-libssl_1.0-2_all.deb", "pw-tools_2.0-1_all.deb", "pw-tools-common_2.0-1_all.deb"} <= set(cache)
    rollback = podman_exec(host.container, "ls", "/var/lib/patchwave/cycles/it-stage/rollback").split()
    assert sorted(rollback) == ["pw-libssl_1.0-1_all.deb", "pw-tools_1.0-1_all.deb"]
    journal = podman_exec(host.container, "cat", "/var/lib/patchwave/cycles/it-stage/journal.json")
    assert '"before": "1.0-1"' in journal
    second = run_module(host.name, "patchwave.endpoint.stage_updates", args)
    assert second["failed"] is False and second["changed"] is False
    assert installed_versions(host.container)["pw-libssl"] == "1.0-1"  # staging installs nothing


@pytest.mark.parametrize("bad", ["pw-libssl=1.0-2;reboot", "-oAPT::Get::AllowUnauthenticated=1=1", "pw-libssl"])
def test_apply_refuses_injected_or_malformed_specs_and_changes_nothing(host, bad: str) -> None:  # type: ignore[no-untyped-def]
    before = installed_versions(host.container)
    result = run_module(host.name, "patchwave.endpoint.apply_updates", {"packages": [bad]})
    assert result["failed"] is True
    assert "packages:" in str(result["msg"])
    assert installed_versions(host.container) == before


def test_apply_refuses_held_packages(host) -> None:  # type: ignore[no-untyped-def]
    result = run_module(host.name, "patchwave.endpoint.apply_updates", {"packages": ["pw-pinned=1.1-1"]})
    assert result["failed"] is True and "held" in str(result["msg"])
    assert installed_versions(host.container)["pw-pinned"] == "1.0-1"


def test_apply_installs_exactly_the_version_asked_and_keeps_the_edited_conffile(host) -> None:  # type: ignore[no-untyped-def]
    wanted = {"packages": ["pw-libssl=1.0-2", "pw-config=1.1-1"]}
    check = run_module(host.name, "patchwave.endpoint.apply_updates", wanted, check=True)
    assert check["changed"] is True and installed_versions(host.container)["pw-libssl"] == "1.0-1"
    result = run_module(host.name, "patchwave.endpoint.apply_updates", wanted)
    assert result["failed"] is False and result["changed"] is True
    versions = installed_versions(host.container)
    assert versions["pw-libssl"] == "1.0-2" and versions["pw-config"] == "1.1-1"
    assert {p["name"]: (p["before"], p["after"]) for p in result["packages"]} == {  # type: ignore[attr-defined]
        "pw-libssl": ("1.0-1", "1.0-2"), "pw-config": ("1.0-1", "1.1-1")}
    assert "edited by the lab admin" in podman_exec(host.container, "cat", "/etc/pw-config/pw.conf")
    again = run_module(host.name, "patchwave.endpoint.apply_updates", wanted)
    assert again["failed"] is False and again["changed"] is False


def test_apply_tells_logged_in_users_and_waits_before_it_installs(host) -> None:  # type: ignore[no-untyped-def]
    """A user logged in over SSH with a terminal gets the notice (wall) and the install starts only
    after the delay. The lab's containers boot without systemd-tmpfiles, so /run/utmp (where sshd
    records logins and wall finds them) is created first, as on any real host."""
    import subprocess
    import time

    import yaml

    podman_exec(host.container, "install", "-m", "664", "-g", "utmp", "/dev/null", "/run/utmp")
    inventory = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())
    port = str(next(hosts[host.name] for g in inventory["all"]["children"].values()
                    if isinstance(hosts := (g or {}).get("hosts"), dict) and hosts.get(host.name))["ansible_port"])
    lab = ROOT / ".patchwave" / "lab"
    session = subprocess.Popen(["ssh", "-tt", "-p", port, "-i", str(lab / "id_ed25519"), "-o",
                                f"UserKnownHostsFile={lab / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                                "-o", "IdentitiesOnly=yes", "patchwave@127.0.0.1", "sleep 90"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "patchwave" not in podman_exec(host.container, "who") and time.monotonic() < deadline:
            time.sleep(0.5)
        started = time.monotonic()
        result = run_module(host.name, "patchwave.endpoint.apply_updates",
                            {"packages": ["pw-tools-common=2.0-1"],  # not installed before: purged after
                             "notify_message": "Patchwave notice 4711: save your work",
                             "notify_delay": 4})
        took = time.monotonic() - started
    finally:
        session.kill()
        heard = session.communicate()[0].decode(errors="replace")
        podman_exec(host.container, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y", "purge",
                    "pw-tools-common")
    assert result["failed"] is False and result["changed"] is True
    assert result["notified"] is True and result["notify_delay"] == 4 and took >= 4
    assert "Broadcast message from root" in heard and "Patchwave notice 4711: save your work" in heard


def test_apply_reports_a_failing_postinst_with_evidence(host) -> None:  # type: ignore[no-untyped-def]
    result = run_module(host.name, "patchwave.endpoint.apply_updates", {"packages": ["pw-agent=1.1-1"]})
    assert result["failed"] is True
    assert "pw-agent" in str(result["msg"])
    assert "cannot migrate state" in str(result.get("stdout", "")) + str(result.get("stderr", ""))
    assert result["dpkg"]["clean"] is False  # type: ignore[index]

