"""Wave planning and gate maths: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from patchwave.models import Host, Wave


def plan(hosts: Sequence[Host], canary_size: int = 1) -> list[Wave]:
    """Canary first (least critical hosts, so a bad patch hurts least), then everyone else."""
    if not hosts:
        return []
    ordered = sorted(hosts, key=lambda h: (h.criticality, h.name))
    size = max(0, min(canary_size, len(ordered)))
    waves = []
    if size:
        waves.append(Wave(0, "canary", tuple(h.name for h in ordered[:size])))
    rest = tuple(h.name for h in ordered[size:])
    if rest:
        waves.append(Wave(len(waves), "broad", rest))
    return waves


def gate_passes(results: Mapping[str, bool], failure_budget: int = 0) -> bool:
    """A wave passes when no more hosts failed (unreachable counts as failed) than the budget."""
    failed = sum(1 for ok in results.values() if not ok)
    return failed <= failure_budget
