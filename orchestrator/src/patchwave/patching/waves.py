"""Wave planning and gate maths: pure functions, no I/O.

Planning puts every targeted host into exactly one wave, in the policy's order: each wave takes
the hosts its selector matches from those not yet placed, least critical first (or by name), up
to its size — a count, or a percentage of all targeted hosts rounded up. The gate after a wave
fails when the wave's own failures exceed its budget, or when all failures so far exceed the
global budget (a percentage of all targeted hosts); unreachable hosts count as failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from patchwave.errors import InputError
from patchwave.models import Host, Wave
from patchwave.patching.policy import Selector, Targets, amount
from patchwave.patching.policy import Wave as WaveSpec


def matches(host: Host, selector: Selector | None) -> bool:
    if selector is None:
        return True
    if selector.groups and not set(selector.groups) & set(host.groups):
        return False
    if selector.device_types and host.device_type not in selector.device_types:
        return False
    return not selector.hosts or any(fnmatchcase(host.name, p) for p in selector.hosts)


def targeted(hosts: Sequence[Host], targets: Targets) -> list[Host]:
    return [h for h in hosts if matches(h, targets) and not any(fnmatchcase(h.name, p) for p in targets.exclude)]


def default_waves(canary_size: int = 1) -> list[WaveSpec]:
    waves = [WaveSpec(name="canary", size=canary_size)] if canary_size > 0 else []
    return [*waves, WaveSpec(name="broad")]


def plan(hosts: Sequence[Host], specs: Sequence[WaveSpec] | int = 1) -> list[Wave]:
    """Waves for `hosts` (already targeted). An int is the canary size of the default plan."""
    if isinstance(specs, int):
        specs = default_waves(specs)
    total = len(hosts)
    remaining = list(hosts)
    waves: list[Wave] = []
    for spec in specs:
        if not remaining:
            break
        candidates = [h for h in remaining if matches(h, spec.selector)]
        if spec.order_by == "criticality":
            candidates.sort(key=lambda h: (h.criticality, h.name))
        else:
            candidates.sort(key=lambda h: h.name)
        chosen = candidates[: amount(spec.size, total)]
        if chosen:
            names = {h.name for h in chosen}
            remaining = [h for h in remaining if h.name not in names]
            waves.append(Wave(len(waves), spec.name, tuple(h.name for h in chosen)))
    if remaining:
        raise InputError(f"{len(remaining)} targeted host(s) fit no wave: {', '.join(sorted(h.name for h in remaining))}; "
                         "end the policy's waves with one that takes the rest (size 100%, no selector)")
    return waves


def gate_passes(results: Mapping[str, bool], failure_budget: int = 0) -> bool:
    """A wave passes when no more hosts failed (unreachable counts as failed) than the budget."""
    failed = sum(1 for ok in results.values() if not ok)
    return failed <= failure_budget


@dataclass(frozen=True)
class GateResult:
    passed: bool
    wave_failed: int
    wave_budget: int
    total_failed: int
    global_budget: int
    reason: str


def gate(wave_results: Mapping[str, bool], wave_budget: int | str, failed_before: int, global_budget: int | str,
         total_hosts: int) -> GateResult:
    wave_failed = sum(1 for ok in wave_results.values() if not ok)
    allowed_wave = amount(wave_budget, len(wave_results))
    total_failed = failed_before + wave_failed
    allowed_total = amount(global_budget, total_hosts)
    reasons = []
    if wave_failed > allowed_wave:
        reasons.append(f"{wave_failed} host(s) failed in the wave, budget {allowed_wave}")
    if total_failed > allowed_total:
        reasons.append(f"{total_failed} host(s) failed in the rollout, global budget {allowed_total}")
    return GateResult(passed=not reasons, wave_failed=wave_failed, wave_budget=allowed_wave, total_failed=total_failed,
                      global_budget=allowed_total, reason="; ".join(reasons) or "within budget")
