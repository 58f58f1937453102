"""Thin links on the lab: hosts of one group stage their updates through a caching apt relay
(apt-cacher-ng in a lab container) at a download limit, while the other group downloads directly.

A signed repository that serves one 1.5 MB update over HTTP runs in a lab container (the origin;
Python's http.server, whose access log says who fetched what). Two cycles run through the CLI:
1. the web group's relay is down: its hosts fail (the scan, which refreshes the lists through
   the relay, checks it first) with a message naming the relay, and nothing is installed on
   them; the database hosts, with no thin link, are patched directly;
2. the relay is up: the web hosts are patched; the origin served their index refresh and the
   update to the relay only, and the relay kept a copy; each web host's download took at least
   its size over the limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, installed_versions, podman_exec
from thinlab import BIG, UPDATE, Site

from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
LIMIT_KBPS = 150


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
def site(lab, tmp_path: Path) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    with Site(lab, tmp_path, ("web1", "web2", "db1", "db2")) as branch:
        yield branch


def cycle(policy_file: Path, store: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--policy", str(policy_file), "--json", "--store", store],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_thin_links_stage_through_the_relay_at_the_limit(site: Site, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'pw.db'}"
    web, db = ("web1", "web2"), ("db1", "db2")

    # 1 the relay is down (nothing listens there): the web hosts fail at once, at the scan, and keep 1.0-1
    down = f"http://{site.origin_ip}:3142/"
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
        assert installed_versions(site.containers[name])[BIG] == "1.0-1"
    for name in db:
        assert states[name]["state"] == "patched", states[name]
        assert installed_versions(site.containers[name])[BIG] == "1.0-2"
    before = site.requests()
    assert sorted(site.update_fetches(before)) == sorted(site.ips[n] for n in db)

    # 2 the relay is up: the web hosts are patched through it, each no faster than the limit
    second_policy = tmp_path / "up.yml"
    second_policy.write_text(policy(site.relay_url))
    code, status, stderr = cycle(second_policy, store)
    assert code == 0, stderr[-3000:]
    assert "2 host(s) in web stage over a thin link: at most 150 KB/s, through relay" in stderr
    # (the database hosts have nothing left to install)
    assert {h["host"]: h["state"] for h in status["hosts"]} == {**dict.fromkeys(web, "patched"),
                                                               **dict.fromkeys(db, "excluded")}
    for name in web:
        assert installed_versions(site.containers[name])[BIG] == "1.0-2"
    served = site.requests()[len(before):]
    # no web host fetched anything from the origin itself: lists and packages came through the relay
    assert {client for client, _path, _status in served} <= {site.relay_ip, *(site.ips[n] for n in db)}, served
    assert any(client == site.relay_ip and path.endswith("/InRelease") for client, path, _status in served), served
    # the origin served the update to the relay only; two hosts asking at the same moment may
    # each cause a fetch (apt-cacher-ng did not always share one download in our runs)
    fetches = site.update_fetches(served)
    assert fetches and set(fetches) == {site.relay_ip} and len(fetches) <= len(web), served
    cached = podman_exec(site.relay, "find", "/var/cache/apt-cacher-ng", "-name", UPDATE)
    assert cached.strip(), "the relay kept no copy"

    stages = {r["host"]: r["data"]["download"] for r in Store(store).host_results(status["cycle_id"])
              if r["stage"] == "stage"}
    floor = site.size / (LIMIT_KBPS * 1024)
    for name in web:
        got = stages[name]
        assert got["bytes"] == site.size and got["limit_kbps"] == LIMIT_KBPS, got
        assert got["relay"] == site.relay_url, got
        assert got["seconds"] >= 0.8 * floor, (got, floor)
    direct = [r["data"]["download"] for r in Store(store).host_results(first_id)
              if r["stage"] == "stage" and r["host"] in db]
    assert len(direct) == 2 and all(d["limit_kbps"] == 0 and d["relay"] is None for d in direct), direct
    assert all(d["seconds"] < floor / 2 for d in direct), (direct, floor)

    # 3 scheduled scans refresh through the schedule's thin links: down, then up
    for job, relay in (("web-scan-down", down), ("web-scan-relay", site.relay_url)):
        sched = tmp_path / f"{job}.yml"
        sched.write_text(f"jobs:\n  - {{name: {job}, kind: scan, every: 1h, groups: [web]}}\nretry: {{window_minutes: 0}}\n"
                         f"thin_links:\n  - {{groups: [web], relay: '{relay}'}}\n")
        mark = len(site.requests())
        proc = subprocess.run([PATCHWAVE, "schedule", "run", "-s", str(sched), "--json", "--store", store],
                              capture_output=True, text=True, cwd=ROOT, check=False, timeout=900)
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
        scans = {s["host"]: s for s in Store(store).scans(None, "scan")}
        clients = {client for client, _path, _status in site.requests()[mark:]}
        for name in web:
            assert not clients & {site.ips[name]}, clients
            if relay == down:
                assert not scans[name]["ok"] and f"relay {down} does not accept" in scans[name]["result"]["msg"]
            else:
                assert scans[name]["ok"], scans[name]["result"].get("msg")
        # (through the relay the origin may see nothing: apt-cacher-ng answers for a fresh index itself)
        assert clients <= (set() if relay == down else {site.relay_ip}), clients
