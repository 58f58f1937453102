"""Services still running old code after real updates: pw-tls (openssl s_server, started at boot)
maps libssl/libcrypto and the openssl binary. Patching those on Debian 12 with `restart: never`
leaves it running the replaced files, and the host ends `patched-pending-restart` naming it;
with `restart: services` it is restarted onto the new code (a new pid, answering) and only PID 1
(the lab's sshd, which a restart would turn into a reboot) is left. Both cycles are rolled back.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from conftest import ROOT, podman_exec
from reallab import INVENTORY, health, healthy, pending, pw

from patchwave.paths import Paths

ENV = {**os.environ, "CONTAINERS_CONF": str(Paths(ROOT).containers_conf)}

POLICY = """\
version: 1
name: restart-{restart}
targets: {{hosts: ["{host}"]}}
waves: [{{name: all}}]
reboot: never
restart: {restart}
user_notice: {{mode: none}}
"""


def mapped_packages(container: str, pid: str) -> set[str]:
    """The packages owning the files a process maps (its executable and shared objects)."""
    maps = podman_exec(container, "cat", f"/proc/{pid}/maps")
    paths = {line.split(None, 5)[5].removesuffix(" (deleted)") for line in maps.splitlines()
             if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith("/")}
    paths.add(podman_exec(container, "readlink", f"/proc/{pid}/exe").strip().removesuffix(" (deleted)"))
    owners = subprocess.run(["podman", "exec", container, "dpkg", "-S", *sorted(paths)], capture_output=True,
                            text=True, check=False, env=ENV).stdout
    return {line.split(":", 1)[0].split(":")[0] for line in owners.splitlines() if ":" in line}


def fresh_service(container: str) -> str:
    """pw-tls restarted now, so that it maps only what is installed; its new pid."""
    podman_exec(container, "/etc/init.d/pw-tls", "restart")
    return podman_exec(container, "cat", "/run/pw-tls.pid").strip()


def cycle(tmp_path: Path, host: str, restart: str) -> dict[str, Any]:
    policy = tmp_path / f"{restart}.yml"
    policy.write_text(POLICY.format(host=host, restart=restart))
    store = f"sqlite:///{tmp_path / f'{restart}.db'}"
    rc, result, stderr = pw("cycle", "run", "-i", str(INVENTORY), "--policy", str(policy), store=store)
    assert rc == 0, stderr[-3000:]
    return {"store": store, **result}


def test_services_on_replaced_code_are_reported_then_restarted(real_lab: Any, tmp_path: Path) -> None:
    hosts = {h.name: h for h in real_lab.hosts()}
    never, services = hosts["d12-copy"], hosts["d12-file"]
    pid = fresh_service(never.container)
    touched = mapped_packages(never.container, pid) & set(pending(never.container))
    assert touched, "no pending Debian 12 update replaces anything pw-tls maps: the test has nothing to show"
    print("pending updates pw-tls maps:", sorted(touched))

    results = {}
    try:
        results["never"] = cycle(tmp_path, never.name, "never")
        state = next(h for h in results["never"]["hosts"] if h["host"] == never.name)
        assert state["state"] == "patched-pending-restart", state
        assert "pw-tls" in state["detail"], state
        assert podman_exec(never.container, "cat", "/run/pw-tls.pid").strip() == pid  # nobody restarted it

        old_pid = fresh_service(services.container)
        results["services"] = cycle(tmp_path, services.name, "services")
        state = next(h for h in results["services"]["hosts"] if h["host"] == services.name)
        new_pid = podman_exec(services.container, "cat", "/run/pw-tls.pid").strip()
        assert new_pid != old_pid, "pw-tls was not restarted"
        assert "pw-tls" not in state["detail"], state
        assert state["state"] in ("patched", "patched-pending-restart"), state  # PID 1 (sshd) may remain
        assert healthy(health(services, real_lab))
    finally:
        for restart, result in results.items():
            rc, _data, stderr = pw("cycle", "rollback", result["cycle_id"], store=result["store"])
            assert rc == 0, (restart, stderr[-2000:])
