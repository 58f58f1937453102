"""Drift: what changed on a host since its previous assessment — newly failing and fixed rules, new
ports, packages and services — and which of it is critical.
"""

from __future__ import annotations

from typing import Any

from patchwave.baseline.rules import FAILING, Rule


def drift(previous: dict[str, Any] | None, results: list[dict[str, Any]], snapshot: dict[str, Any],
          rules: dict[str, Rule]) -> dict[str, Any] | None:
    """What changed since the host's previous assessment. Critical: a critical rule that newly
    fails, a new listening port, a new uid-0 account."""
    if previous is None:
        return None
    before = {r["rule_id"]: r["status"] for r in previous["results"]}
    newly_failing = sorted(r["id"] for r in results if r["status"] in FAILING and before.get(r["id"]) not in (None, *FAILING))
    newly_fixed = sorted(r["id"] for r in results if r["status"] == "pass" and before.get(r["id"]) in FAILING)
    old = previous.get("snapshot") or {}
    new_ports = sorted(set(snapshot.get("ports", [])) - set(old.get("ports", [])))
    listeners = [line for line in snapshot.get("listening", [])
                 if any(line.startswith(f"{p.split('/')[0]} ") and f":{p.split('/')[1]} " in line for p in new_ports)]
    new_packages = sorted(set(snapshot.get("packages", {})) - set(old.get("packages", {})))
    removed_packages = sorted(set(old.get("packages", {})) - set(snapshot.get("packages", {})))
    new_services = sorted(set(snapshot.get("services", [])) - set(old.get("services", [])))
    new_uid0 = sorted(set(snapshot.get("uid0", [])) - set(old.get("uid0", [])))
    critical = [f"rule {rid} newly fails ({rules[rid].title})" for rid in newly_failing
                if rid in rules and rules[rid].criticality == "critical"]
    critical += [f"new listening socket: {line}" for line in listeners] or [f"new listening port {p}" for p in new_ports]
    critical += [f"new uid-0 account: {name}" for name in new_uid0]
    return {"since": str(previous["at"]), "previous_assessment": previous["id"], "newly_failing": newly_failing,
            "newly_fixed": newly_fixed, "new_ports": new_ports, "new_packages": new_packages,
            "removed_packages": removed_packages, "new_services": new_services, "new_uid0": new_uid0,
            "critical": critical}
