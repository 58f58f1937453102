"""Thin links on the lab: hosts of one group stage their updates through a caching apt relay
(apt-cacher-ng in a lab container) at a download limit, while the other group downloads directly.

A signed repository that serves one 1.5 MB update over HTTP runs in a lab container (the origin;
Python's http.server, whose access log says who fetched what). Two cycles run through the CLI:
1. the web group's relay is down: its hosts fail (the scan, which refreshes the lists through
   the relay, checks it first) with a message naming the relay, and nothing is installed on
   them; the database hosts, with no thin link, are patched directly;
2. the relay is up: the web hosts are patched; the origin served their index refresh and the
   update to the relay only, the update once (the second web host got the relay's copy); each
   web host's download took at least its size over the limit.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, installed_versions, podman_exec

from patchwave.lab import catalog, images, repo
from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")}
RELAY_PACKAGES = ("apt-cacher-ng",)
LIMIT_KBPS = 150
BIG = "pw-bigdata"
SOURCES = "/etc/apt/sources.list.d/patchwave-thin.sources"
HOSTS = ("web1", "web2", "db1", "db2")


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], env=ENV, check=True, capture_output=True, text=True).stdout


def address(container: str, network: str) -> str:
    return podman("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', container).strip()


def policy(relay: str) -> str:
    return f"""\
version: 1
name: thin-links
targets: {{groups: [web, db]}}
approval: {{security: true, other: true, include: [{BIG}]}}
waves: [{{name: all}}]
gates: {{failure_budget: "100%"}}
reboot: never
user_notice: {{mode: none}}
thin_links:
  - groups: [web]
    download_limit_kbps: {LIMIT_KBPS}
    relay: {relay}
"""


@pytest.fixture
def thin_lab(lab, tmp_path: Path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The origin repository and the relay in the lab network; the four servers use the origin."""
    rng = random.Random(8)
    blob = base64.b64encode(rng.randbytes(1_150_000)).decode()  # incompressible: about 1.2 MB as .deb
    packages = (
        catalog.LabPackage(BIG, "1.0-1", catalog.SUITE_REGULAR, "lab bulk data", files={"/usr/share/pw-bigdata/v": "1\n"}),
        catalog.LabPackage(BIG, "1.0-2", catalog.SUITE_SECURITY, "lab bulk data (security fix)",
                           files={"/usr/share/pw-bigdata/v": "2\n", "/usr/share/pw-bigdata/blob": blob}),
    )
    origin_dir = tmp_path / "origin"
    repo.build_repository(origin_dir, lab.gnupghome, lab.keyring, packages)
    tag = f"{os.getpid()}"
    origin, relay = f"pw-thin-origin-{tag}", f"pw-thin-relay-{tag}"
    relay_image = images.ensure_image("bookworm", ROOT / ".patchwave" / "cache", [], RELAY_PACKAGES)
    label = f"io.patchwave.lab={lab.prefix}"
    try:
        podman("run", "-d", "--name", origin, "--label", label, "--network", lab.network,
               "--volume", f"{origin_dir}:/srv/origin:ro", images.image_ref("bookworm"),
               "python3", "-m", "http.server", "80", "--directory", "/srv/origin")
        podman("run", "-d", "--name", relay, "--label", label, "--network", lab.network, relay_image,
               "/usr/sbin/apt-cacher-ng", "ForeGround=1")
        origin_ip = address(origin, lab.network)
        containers = {h.name: h.container for h in lab.hosts()}
        entry = repo.sources_entry("X").replace("copy:X", f"http://{origin_ip}/")
        for name in HOSTS:
            subprocess.run(["podman", "exec", "-i", containers[name], "tee", SOURCES], input=entry.encode(), env=ENV,
                           check=True, capture_output=True)
            podman_exec(containers[name], "apt-get", "-q", "update")
            podman_exec(containers[name], "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y",
                        "install", f"{BIG}=1.0-1")
            podman_exec(containers[name], "apt-get", "clean")
        yield {"origin": origin, "relay": relay, "origin_ip": origin_ip, "relay_ip": address(relay, lab.network),
               "containers": containers,
               "ips": {name: address(containers[name], lab.network) for name in HOSTS},
               "size": (origin_dir / f"pool/{catalog.SUITE_SECURITY}/{BIG}_1.0-2_all.deb").stat().st_size}
    finally:
        for name in HOSTS:
            container = next(h.container for h in lab.hosts() if h.name == name)
            subprocess.run(["podman", "exec", container, "sh", "-c",
                            f"rm -f {SOURCES}; dpkg --purge {BIG}; apt-get -q update; apt-get clean"],
                           env=ENV, check=False, capture_output=True)
        subprocess.run(["podman", "rm", "-f", "-t", "0", origin, relay], env=ENV, check=False, capture_output=True)


def cycle(policy_file: Path, store: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--policy", str(policy_file), "--json", "--store", store],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def requests(origin: str) -> list[tuple[str, str]]:
    """(client address, path) of each GET the origin served, from its access log."""
    log = subprocess.run(["podman", "logs", origin], env=ENV, check=True, capture_output=True, text=True)
    return [(line.split()[0], line.split('"GET ')[1].split()[0]) for line in (log.stdout + log.stderr).splitlines()
            if '"GET ' in line]


def deb_fetches(served: list[tuple[str, str]]) -> list[str]:
    return [client for client, path in served if path.endswith(f"/{BIG}_1.0-2_all.deb")]


def test_thin_links_stage_through_the_relay_at_the_limit(lab, thin_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = f"sqlite:///{tmp_path / 'pw.db'}"
    web, db = ("web1", "web2"), ("db1", "db2")

    # 1 the relay is down (nothing listens there): web hosts fail staging and keep 1.0-1
    down = f"http://{thin_lab['origin_ip']}:3142/"
    first_policy = tmp_path / "down.yml"
    first_policy.write_text(policy(down))
    code, status, stderr = cycle(first_policy, store)
    first_id = status["cycle_id"]
    assert code == 1, stderr[-3000:]
    assert "2 host(s) in web scan over a thin link: at most 150 KB/s, through relay" in stderr
    states = {h["host"]: h for h in status["hosts"]}
    for name in web:
        assert states[name]["state"] == "failed", states[name]
        assert states[name]["detail"].startswith(f"scan failed: relay {down} does not accept connections"), states[name]
        assert installed_versions(thin_lab["containers"][name])[BIG] == "1.0-1"
    for name in db:
        assert states[name]["state"] == "patched", states[name]
        assert installed_versions(thin_lab["containers"][name])[BIG] == "1.0-2"
    before = requests(thin_lab["origin"])
    assert sorted(deb_fetches(before)) == sorted(thin_lab["ips"][n] for n in db)

    # 2 the relay is up: the web hosts are patched through it, each no faster than the limit
    second_policy = tmp_path / "up.yml"
    second_policy.write_text(policy(f"http://{thin_lab['relay_ip']}:3142/"))
    code, status, stderr = cycle(second_policy, store)
    assert code == 0, stderr[-3000:]
    assert "2 host(s) in web stage over a thin link: at most 150 KB/s, through relay" in stderr
    # (the database hosts have nothing left to install)
    assert {h["host"]: h["state"] for h in status["hosts"]} == {**dict.fromkeys(web, "patched"),
                                                               **dict.fromkeys(db, "excluded")}
    for name in web:
        assert installed_versions(thin_lab["containers"][name])[BIG] == "1.0-2"
    served = requests(thin_lab["origin"])[len(before):]
    # no web host fetched anything from the origin itself: lists and packages came through the relay
    assert {client for client, _path in served} <= {thin_lab["relay_ip"], *(thin_lab["ips"][n] for n in db)}, served
    assert any(client == thin_lab["relay_ip"] and path.endswith("/InRelease") for client, path in served), served
    # the origin served the update once, to the relay (the second web host got the relay's copy)
    assert deb_fetches(served) == [thin_lab["relay_ip"]], served
    cached = podman_exec(thin_lab["relay"], "find", "/var/cache/apt-cacher-ng", "-name", f"{BIG}_1.0-2_all.deb")
    assert cached.strip(), "the relay kept no copy"

    stages = {r["host"]: r["data"]["download"] for r in Store(store).host_results(status["cycle_id"])
              if r["stage"] == "stage"}
    floor = thin_lab["size"] / (LIMIT_KBPS * 1024)
    for name in web:
        got = stages[name]
        assert got["bytes"] == thin_lab["size"] and got["limit_kbps"] == LIMIT_KBPS, got
        assert got["relay"] == f"http://{thin_lab['relay_ip']}:3142/", got
        assert got["seconds"] >= 0.8 * floor, (got, floor)
    direct = [r["data"]["download"] for r in Store(store).host_results(first_id)
              if r["stage"] == "stage" and r["host"] in db]
    assert len(direct) == 2 and all(d["limit_kbps"] == 0 and d["relay"] is None for d in direct), direct
    assert all(d["seconds"] < floor / 2 for d in direct), (direct, floor)

    # 3 scheduled scans refresh through the schedule's thin links: down, then up
    for job, relay in (("web-scan-down", down), ("web-scan-relay", f"http://{thin_lab['relay_ip']}:3142/")):
        sched = tmp_path / f"{job}.yml"
        sched.write_text(f"jobs:\n  - {{name: {job}, kind: scan, every: 1h, groups: [web]}}\nretry: {{window_minutes: 0}}\n"
                         f"thin_links:\n  - {{groups: [web], relay: '{relay}'}}\n")
        mark = len(requests(thin_lab["origin"]))
        proc = subprocess.run([PATCHWAVE, "schedule", "run", "-s", str(sched), "--json", "--store", store],
                              capture_output=True, text=True, cwd=ROOT, check=False, timeout=900)
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
        scans = {s["host"]: s for s in Store(store).scans(None, "scan")}
        clients = {client for client, _path in requests(thin_lab["origin"])[mark:]}
        for name in web:
            assert not clients & {thin_lab["ips"][name]}, clients
            if relay == down:
                assert not scans[name]["ok"] and f"relay {down} does not accept" in scans[name]["result"]["msg"]
            else:
                assert scans[name]["ok"], scans[name]["result"].get("msg")
        assert clients == (set() if relay == down else {thin_lab["relay_ip"]}), clients
