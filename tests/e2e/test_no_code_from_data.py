"""No code from data, on real lab hosts: template text in every value that the orchestrator hands
to the roles and modules (health checks, the user notice, the reboot message, a baseline rule's
arguments, manifest package data) reaches the host as those characters; no lookup runs on the
controller and nothing runs on the host. The policy validators refuse such text before a run
(tests/security); this proves the runner boundary holds even for a value that got past them."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, installed_versions

from patchwave.ansible.runner import PlaybookRunner


def payload(marker: str) -> str:
    return (f"{{{{ lookup('ansible.builtin.pipe', 'touch {marker}') }}}}"
            f"{{% set _x = lookup('ansible.builtin.pipe', 'touch {marker}') %}}")


@pytest.fixture
def marker(lab) -> Any:  # type: ignore[no-untyped-def]
    """A path that must never come to exist, on the controller or on any lab host."""
    path = f"/tmp/pw-marker-{uuid.uuid4().hex}"
    yield path
    assert not Path(path).exists(), "a template ran on the controller"
    for host in lab.hosts():
        probe = subprocess.run(["podman", "exec", host.container, "test", "-e", path], capture_output=True,
                               env={"CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf"),
                                    "PATH": "/usr/bin:/bin"}, check=False)
        assert probe.returncode == 1, f"a template ran on {host.name}"


def _runner(tmp_path: Path) -> PlaybookRunner:
    return PlaybookRunner(ROOT, tmp_path / "runs")


def _messages(tmp_path: Path, ident: str) -> str:
    events = tmp_path / "runs" / ident / "artifacts" / "run" / "job_events"
    return "\n".join(p.read_text() for p in events.iterdir())


def test_health_check_values_are_inert(lab, marker: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = next(h for h in lab.hosts() if h.name == "web1")
    text = payload(marker)
    result = _runner(tmp_path).run(
        "health.yml", ROOT / "inventories/lab/hosts.yml", ident="health", limit=[host.name],
        extravars={"health_checks": [{"service": text}, {"http": f"http://127.0.0.1:9/{text}"}]})
    outcome = result.hosts[host.name]
    assert not outcome.ok  # no such service, nothing listening: the checks fail, as plain values
    assert "touch" in _messages(tmp_path, "health")  # the text reached the host as text


def test_user_notice_and_reboot_message_are_inert(lab, marker: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = next(h for h in lab.hosts() if h.name == "ws1")
    name, version = next((n, v) for n, v in sorted(installed_versions(host.container).items()) if n == "bash")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cycle_id": "inert", "created": "", "hosts": {host.name: {"packages": [
        f"{name}={version}"]}}}))
    text = payload(marker)
    result = _runner(tmp_path).run(
        "deploy.yml", ROOT / "inventories/lab/hosts.yml", ident="deploy", limit=[host.name], check=True,
        extravars={"patchwave_manifest_file": str(manifest), "deploy_notify_users": True,
                   "deploy_notify_message": text, "deploy_reboot_message": text, "deploy_reboot_policy": "never",
                   "deploy_notify_delay": 0})
    assert result.hosts[host.name].ok, result.hosts
    res = result.result("patchwave.endpoint.apply_updates", host.name) or {}
    assert res and not res.get("failed"), res


def test_baseline_rule_arguments_are_inert(lab, marker: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from patchwave.ansible.inventory import load_hosts
    from patchwave.baseline.assessment import compile_rules, rules_document
    from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline

    (host,) = [h for h in load_hosts(ROOT / "inventories/lab/hosts.yml") if h.name == "db1"]
    document = rules_document(compile_rules(Baseline(DEFAULT_PROFILE, None), [host]))
    rule = next(r for r in document["hosts"][host.name]["rules"] if r["type"] == "file_content")
    text = payload(marker)
    rule["args"] = {**rule["args"], "path": ["/etc/hostname"], "regex": text, "state": "absent"}
    document["hosts"][host.name]["rules"] = [rule]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(document))
    result = _runner(tmp_path).run("assess.yml", ROOT / "inventories/lab/hosts.yml", ident="assess",
                                   limit=[host.name], extravars={"patchwave_rules_file": str(rules)})
    res = result.result("patchwave.endpoint.assess_baseline", host.name) or {}
    assert res and not res.get("failed"), res
    (verdict,) = [r for r in res["results"] if r["id"] == rule["id"]]
    assert verdict["status"] == "pass", verdict  # the text is not in the file: as a plain regex, it passes
