"""The real-content lab for the tests in tests/real: Debian 11, 12 and 13 hosts from the main
suite with the security archive's real updates pending (patchwave lab up --content real).

What a test expects is read from the hosts when it runs (dpkg and apt inside the containers,
never through Patchwave), never from a package list written into a test: the archive moves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, installed_versions, podman_exec

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
INVENTORY = ROOT / "inventories" / "lab-real" / "hosts.yml"


def pending(container: str) -> dict[str, str]:
    """name -> version of what `apt-get dist-upgrade` would install now, as apt on the host says."""
    out = podman_exec(container, "apt-get", "-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade")
    return dict(re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", out, re.M))


def health(host: Any, lab: Any) -> dict[str, Any]:
    """Everything that says the host is healthy, each read independently of Patchwave."""
    c = host.container

    def ok(*argv: str) -> tuple[bool, str]:
        proc = subprocess.run(["podman", "exec", c, *argv], capture_output=True, text=True, check=False,
                              env={**os.environ, "CONTAINERS_CONF": str(lab.paths.containers_conf)})
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()

    ssh = subprocess.run(
        ["ssh", "-i", str(lab.ssh_key), "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(host.ssh_port),
         "patchwave@127.0.0.1", "sudo", "-n", "true"], capture_output=True, text=True, check=False)
    apt_ok, apt_out = ok("apt-get", "-q", "-o", "Debug::NoLocking=1", "check")
    audit_ok, audit = ok("dpkg", "--audit")
    ssl_ok, ssl_out = ok("python3", "-c", "import ssl; print(ssl.OPENSSL_VERSION)")
    tls_ok, tls_out = ok("python3", "-c", TLS_PROBE)
    return {
        "ssh": ssh.returncode == 0 or ssh.stderr.strip(),
        "apt-get check": apt_ok or apt_out,
        "dpkg --audit": (audit_ok and audit == "") or audit,
        "python3 ssl": ssl_ok or ssl_out,
        "pw-tls answers": tls_ok or tls_out,
    }


TLS_PROBE = """\
import socket, ssl
context = ssl.create_default_context(cafile="/etc/apt/keyrings/patchwave-lab-ca.pem")
with socket.create_connection(("127.0.0.1", 4433), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        assert tls.recv(64).startswith(b"HTTP/1.0 200"), "pw-tls did not answer"
"""


def healthy(report: dict[str, Any]) -> bool:
    return all(value is True for value in report.values())


def pw(*args: str, store: str | None, timeout: int = 3600) -> tuple[int, Any, str]:
    """`patchwave ARGS --json [--store STORE]`: (exit code, the JSON it printed, stderr)."""
    extra = ["--store", store] if store else []
    proc = subprocess.run([PATCHWAVE, *args, "--json", *extra], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=timeout)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    return proc.returncode, data, proc.stderr


def snapshot(lab: Any) -> dict[str, dict[str, str]]:
    return {h.name: installed_versions(h.container) for h in lab.hosts()}
