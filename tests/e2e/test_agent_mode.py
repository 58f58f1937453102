"""Agent mode: a host without SSH (a Debian 12 container with Debian's ansible-core, no sshd,
sharing the machine's network so that 127.0.0.1 is the orchestrator's loopback) runs
playbooks/agent.yml locally and delivers its scan and assessment to `patchwave serve` over HTTPS
on loopback (a certificate the test makes; the agent verifies it); the results land in the store
and the compliance workbook like results fetched over SSH. A bad or missing token is refused and
nothing is stored."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from notifyservers import self_signed
from openpyxl import load_workbook

from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
AGENT_PACKAGES = ("ansible-core", "python3-cffi-backend")  # debootstrap does not resolve the virtual dependency
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")}
INVENTORY = "all:\n  children:\n    remote:\n      hosts:\n        agent1: {patchwave_device_type: workstation, " \
            "patchwave_owner: field-team}\n"


@pytest.fixture
def agent_host() -> Iterator[str]:
    from patchwave.lab.images import ensure_image

    log: list[str] = []
    image = ensure_image("bookworm", ROOT / ".patchwave" / "cache", log, AGENT_PACKAGES)
    name = f"pw-agent-test-{os.getpid()}"
    subprocess.run(["podman", "run", "-d", "--rm", "--network", "host", "--name", name, image, "sleep", "infinity"],
                   env=ENV, check=True, capture_output=True)
    try:
        subprocess.run(["podman", "exec", name, "mkdir", "-p", "/opt/patchwave"], env=ENV, check=True)
        subprocess.run(["podman", "cp", str(ROOT / "collections"), f"{name}:/opt/patchwave/collections"], env=ENV,
                       check=True)
        subprocess.run(["podman", "cp", str(ROOT / "playbooks/agent.yml"), f"{name}:/opt/patchwave/agent.yml"],
                       env=ENV, check=True)
        yield name
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=ENV, check=False, capture_output=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def deliver(port: int, host: str, token: str | None, body: dict[str, object], tls: ssl.SSLContext) -> int:
    headers = {"Content-Type": "application/json", "X-Patchwave-Host": host}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"https://127.0.0.1:{port}/v1/results", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30, context=tls) as answer:  # noqa: S310 - loopback
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_agent_delivers_over_loopback_and_bad_tokens_store_nothing(agent_host: str, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    common = ["-i", str(inventory), "--store", url]
    token = subprocess.run([PATCHWAVE, "agent", "token", "agent1", *common], capture_output=True, text=True,
                           cwd=ROOT, check=True).stdout.strip()
    assert len(token) >= 40 and token not in json.dumps(next(Store(url).rows("agent_tokens")), default=str)
    subprocess.run([PATCHWAVE, "assess", "--compile", str(tmp_path / "rules.json"), "-i", str(inventory)],
                   cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["podman", "cp", str(tmp_path / "rules.json"), f"{agent_host}:/opt/patchwave/rules.json"], env=ENV,
                   check=True)
    cert, key = self_signed(tmp_path)
    subprocess.run(["podman", "cp", str(cert), f"{agent_host}:/opt/patchwave/ca.crt"], env=ENV, check=True)
    port = free_port()
    server = subprocess.Popen([PATCHWAVE, "serve", "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert),
                               "--tls-key", str(key), *common], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    tls = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        # refused: no token, a wrong token, another host's name, a host not in the inventory
        scan = {"kind": "scan", "result": {"updates": []}}
        assert deliver(port, "agent1", None, scan, tls) == 401
        assert deliver(port, "agent1", "not-the-token", scan, tls) == 401
        assert deliver(port, "web9", token, scan, tls) == 401
        assert list(Store(url).rows("scans")) == [] and list(Store(url).rows("assessments")) == []

        run = subprocess.run(
            ["podman", "exec", "-e", f"PATCHWAVE_AGENT_TOKEN={token}", "-e",
             "ANSIBLE_COLLECTIONS_PATH=/opt/patchwave/collections", "-e", "ANSIBLE_FORCE_COLOR=0", agent_host,
             "ansible-playbook", "-c", "local", "-i", "localhost,", "/opt/patchwave/agent.yml",
             "-e", "patchwave_agent_host=agent1", "-e", f"patchwave_server_url=https://127.0.0.1:{port}",
             "-e", "patchwave_agent_ca_path=/opt/patchwave/ca.crt", "-e", "patchwave_rules_file=/opt/patchwave/rules.json"],
            env=ENV, capture_output=True, text=True, check=False, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert token not in run.stdout + run.stderr  # no_log on the delivery
    finally:
        server.terminate()
        served = server.communicate(timeout=30)[1]
    assert "refused a delivery for 'agent1'" in served and "agent agent1: assessment stored" in served
    store = Store(url)
    (stored_scan,) = list(store.rows("scans"))
    assert stored_scan["host"] == "agent1" and stored_scan["ok"] and stored_scan["result"]["delivered_by"] == "agent"
    (assessment,) = list(store.rows("assessments"))
    assert assessment["host"] == "agent1" and assessment["ok"] and assessment["summary"]["total"] > 100
    book = json.loads(subprocess.run([PATCHWAVE, "report", "--type", "compliance", "-o", str(tmp_path / "c.xlsx"),
                                      "--json", *common], capture_output=True, text=True, cwd=ROOT,
                                     check=True).stdout)["workbooks"][0]["workbook"]
    rows = list(load_workbook(book)["Hosts"].iter_rows(values_only=True))
    (agent,) = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert agent["Host"] == "agent1" and agent["Status"] in ("compliant", "non-compliant", "compliant with exceptions")
    assert agent["Score"] is not None
