"""Property tests for wave planning and gate maths (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwave.errors import InputError
from patchwave.models import Host
from patchwave.patching import waves
from patchwave.patching.policy import Selector, Targets, amount
from patchwave.patching.policy import Wave as WaveSpec

hosts_strategy = st.lists(
    st.builds(Host, name=st.from_regex(r"[a-z]{1,6}[0-9]{0,3}", fullmatch=True),
              groups=st.lists(st.sampled_from(["web", "db", "ws"]), max_size=2, unique=True).map(tuple),
              device_type=st.sampled_from(["server", "workstation"]), criticality=st.integers(0, 5)),
    max_size=60, unique_by=lambda h: h.name)
size_strategy = st.one_of(st.integers(1, 70), st.integers(1, 100).map(lambda p: f"{p}%"))
spec_strategy = st.builds(WaveSpec, name=st.just("w"), size=size_strategy,
                          selector=st.one_of(st.none(), st.builds(Selector, groups=st.lists(
                              st.sampled_from(["web", "db", "ws"]), max_size=1))),
                          order_by=st.sampled_from(["criticality", "name"]))


def _specs(middle: list[WaveSpec]) -> list[WaveSpec]:
    named = [WaveSpec(**{**s.model_dump(), "name": f"w{i}"}) for i, s in enumerate(middle)]
    return [*named, WaveSpec(name="rest")]


@settings(max_examples=300, deadline=None)
@given(hosts_strategy, st.lists(spec_strategy, max_size=4))
def test_every_host_lands_in_exactly_one_wave(hosts: list[Host], middle: list[WaveSpec]) -> None:
    specs = _specs(middle)
    planned = waves.plan(hosts, specs)
    placed = [name for wave in planned for name in wave.hosts]
    assert sorted(placed) == sorted(h.name for h in hosts)
    assert len(placed) == len(set(placed))
    assert [w.index for w in planned] == list(range(len(planned)))
    by_name = {h.name: h for h in hosts}
    spec_by_name = {s.name: s for s in specs}
    for wave in planned:
        spec = spec_by_name[wave.name]
        assert 0 < len(wave.hosts) <= amount(spec.size, len(hosts))  # sizes respected
        assert all(waves.matches(by_name[n], spec.selector) for n in wave.hosts)
        keys = [(by_name[n].criticality, n) if spec.order_by == "criticality" else (n,) for n in wave.hosts]
        assert keys == sorted(keys)  # ordering respected


@settings(max_examples=300, deadline=None)
@given(hosts_strategy, size_strategy)
def test_a_wave_takes_the_least_critical_hosts_first(hosts: list[Host], size: int | str) -> None:
    planned = waves.plan(hosts, [WaveSpec(name="first", size=size), WaveSpec(name="rest")])
    if len(planned) == 2:
        first = {h.name: h for h in hosts if h.name in planned[0].hosts}
        rest = [h for h in hosts if h.name in planned[1].hosts]
        assert max(h.criticality for h in first.values()) <= min(h.criticality for h in rest)


@given(st.integers(0, 200), st.integers(1, 500))
def test_percent_budget_is_exact_at_the_boundary(percent: int, total: int) -> None:
    allowed = amount(f"{min(percent, 100)}%", total)
    results = {f"h{i}": i >= allowed for i in range(total)}  # exactly `allowed` failures
    assert waves.gate(results, f"{min(percent, 100)}%", 0, "100%", total).passed
    if allowed < total:
        results[f"h{allowed}"] = False  # one more failure than allowed
        assert not waves.gate(results, f"{min(percent, 100)}%", 0, "100%", total).passed


@given(st.integers(0, 50), st.integers(0, 50), st.integers(1, 200))
def test_global_budget_counts_failures_across_waves(before: int, now: int, budget: int) -> None:
    results = {f"h{i}": False for i in range(now)}
    result = waves.gate(results, "100%", before, budget, 1000)
    assert result.passed == (before + now <= budget)
    assert result.total_failed == before + now


def test_hosts_left_without_a_wave_are_an_error() -> None:
    hosts = [Host("a", ("web",)), Host("b", ("db",))]
    with pytest.raises(InputError, match="fit no wave: b"):
        waves.plan(hosts, [WaveSpec(name="web", selector=Selector(groups=["web"]))])


def test_targets_and_exclusions() -> None:
    hosts = [Host("web1", ("web",), "server"), Host("web9", ("web",), "server"), Host("ws1", ("ws",), "workstation")]
    chosen = waves.targeted(hosts, Targets(groups=["web"], exclude=["web9"]))
    assert [h.name for h in chosen] == ["web1"]
