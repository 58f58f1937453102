"""The cycle's state machine with a scripted runner in place of ansible-runner: each move of the
cycle and its waves, the moves the store refuses, and a resume from every point at which an
orchestrator can die (each playbook run, the approval gate), which ends where an uninterrupted
cycle ends without deploying a finished wave twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from patchwave.ansible.runner import RunResult
from patchwave.errors import PatchwaveError
from patchwave.models import HostResult
from patchwave.patching.cycle import Cycle, approve
from patchwave.patching.policy import Policy
from patchwave.paths import Paths
from patchwave.states import CYCLE_MOVES, WAVE_MOVES, CycleStatus, HostState, WaveStatus
from patchwave.store import Store

HOSTS = ("web1", "web2", "db1")
SCAN = "patchwave.endpoint.pending_updates"
ACTIONS = {"stage.yml": "patchwave.endpoint.stage_updates", "deploy.yml": "patchwave.endpoint.apply_updates",
           "rollback.yml": "patchwave.endpoint.rollback_updates"}


class Died(Exception):
    """The orchestrator died (killed, the machine rebooted) at this run."""


@dataclass
class Script:
    """What the hosts do: each has one security update pending; `fail_deploy` hosts fail to
    install it; the runs whose ident starts with `die_at` kill the orchestrator."""

    fail_deploy: set[str] = field(default_factory=set)
    die_at: str | None = None
    deployed: list[str] = field(default_factory=list)  # every host each deploy run went to, in order
    rolled_back: set[str] = field(default_factory=set)
    idents: list[str] = field(default_factory=list)


class ScriptedRunner:
    def __init__(self, script: Script) -> None:
        self.script = script

    def run(self, playbook: str, inventory: Path, *, ident: str, limit: list[str] | None = None,
            extravars: dict[str, Any] | None = None, check: bool = False, diff: bool = False) -> RunResult:
        script, hosts = self.script, list(limit or HOSTS)
        if script.die_at is not None and ident.startswith(script.die_at):
            script.die_at = None  # it dies once; the resumed orchestrator gets through
            raise Died(ident)
        script.idents.append(ident)
        name = Path(playbook).name
        outcomes = {h: HostResult(h, ok=True) for h in hosts}
        results: dict[str, dict[str, dict[str, Any]]] = {}
        if name in ("scan.yml", "confirm.yml"):
            results[SCAN] = {h: self._scan(h, name == "confirm.yml") for h in hosts}
        elif name in ACTIONS:
            if name == "deploy.yml":
                script.deployed += hosts
            if name == "rollback.yml":
                script.rolled_back |= set(hosts)
            failing = script.fail_deploy if name == "deploy.yml" else set()
            results[ACTIONS[name]] = {h: {"failed": h in failing, "changed": h not in failing,
                                          "msg": "dpkg: error processing pw-libssl" if h in failing else ""}
                                      for h in hosts}
            outcomes = {h: HostResult(h, ok=h not in failing, message=results[ACTIONS[name]][h]["msg"]) for h in hosts}
        return RunResult("successful", 0, {}, hosts=outcomes, results=results)

    def _scan(self, host: str, confirm: bool) -> dict[str, Any]:
        patched = host in self.script.deployed and host not in self.script.fail_deploy \
            and host not in self.script.rolled_back
        result: dict[str, Any] = {
            "os": {"ecosystem": "Debian:12"},
            "updates": [] if patched else [{"name": "pw-libssl", "installed": "1.0-1", "candidate": "1.0-2",
                                            "security": True, "origins": [{"suite": "patchwave-lab-bookworm-security"}]}],
            "installed": {"pw-libssl": "1.0-2" if patched else "1.0-1"},
        }
        if confirm:
            state = (HostState.PATCHED if patched else HostState.ROLLED_BACK if host in self.script.rolled_back
                     else HostState.FAILED)
            result["confirmation"] = {"state": str(state), "detail": f"{state} (scripted)"}
        return result


class RecordingStore(Store):
    """The store, noting every status move it accepts."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.moves: list[tuple[str, str]] = []

    def set_cycle_status(self, cycle_id: str, status: CycleStatus, finished: bool = False) -> None:
        super().set_cycle_status(cycle_id, status, finished)
        self.moves.append(("cycle", str(status)))

    def set_wave_status(self, wave_id: int, status: WaveStatus, gate: dict[str, Any] | None = None) -> None:
        super().set_wave_status(wave_id, status, gate)
        self.moves.append((f"wave{wave_id}", str(status)))

    def start_wave(self, cycle_id: str, idx: int, name: str, hosts: list[str]) -> int:
        wave_id = super().start_wave(cycle_id, idx, name, hosts)
        self.moves.append((f"wave{wave_id}", "running"))
        return wave_id

    def finish_wave(self, wave_id: int, status: WaveStatus, gate: dict[str, Any]) -> None:
        super().finish_wave(wave_id, status, gate)
        self.moves.append((f"wave{wave_id}", str(status)))


def policy(**changes: Any) -> Policy:
    waves = changes.pop("waves", [{"name": "canary", "size": 1}, {"name": "broad"}])
    return Policy.model_validate({"name": "scripted", "waves": waves, "reboot": "never", **changes})


@pytest.fixture
def setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Paths, Path]:
    monkeypatch.setenv("PATCHWAVE_STATE_DIR", str(tmp_path / "state"))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    web: {hosts: {web1: {}, web2: {}}}\n    db: {hosts: {db1: {}}}\n")
    return Paths(tmp_path), inventory


def cycle_for(setting: tuple[Paths, Path], store: Store, script: Script) -> Cycle:
    paths, inventory = setting
    return Cycle(paths, store, inventory, runners=lambda _work, _cycle, _policy: ScriptedRunner(script))


def end_states(store: Store, cycle_id: str) -> dict[str, str]:
    return {h: s["state"] for h, s in store.end_states(cycle_id).items()}


def test_a_cycle_moves_through_its_states_and_each_wave_through_its_own(setting: tuple[Paths, Path],
                                                                         tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    script = Script()
    cycle_id = cycle_for(setting, store, script).run(policy(), force_window=True)
    assert store.cycle(cycle_id)["status"] == CycleStatus.COMPLETED  # type: ignore[index]
    cycle_moves = [s for who, s in store.moves if who == "cycle"]
    assert cycle_moves == ["deploying", "confirming", "completed"]  # started and approved are written with their rows
    waves = store.waves(cycle_id)
    for wave in waves:
        assert [s for who, s in store.moves if who == f"wave{wave['id']}"] == ["running", "passed"]
    assert end_states(store, cycle_id) == dict.fromkeys(HOSTS, "patched")
    assert sorted(script.deployed) == sorted(HOSTS)  # each host deployed exactly once


def test_a_failed_canary_fails_its_wave_halts_the_cycle_and_is_rolled_back(setting: tuple[Paths, Path],
                                                                            tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    canary = "db1"  # criticality ties are broken by name: db1 goes first
    script = Script(fail_deploy={canary})
    cycle_id = cycle_for(setting, store, script).run(policy(gates={"rollback_on_failure": True}), force_window=True)
    assert store.cycle(cycle_id)["status"] == CycleStatus.HALTED  # type: ignore[index]
    assert [(w["name"], w["status"]) for w in store.waves(cycle_id)] == [("canary", "failed"), ("broad", "skipped")]
    assert script.deployed == [canary] and script.rolled_back == {canary}
    assert end_states(store, cycle_id) == {canary: "rolled-back", "web1": "not-reached", "web2": "not-reached"}
    assert any(e["kind"] == "rollback" and "rolled back after its gate failed" in e["message"]
               for e in store.events(cycle_id))


def test_an_approval_gate_parks_the_cycle_and_the_decision_moves_it_on(setting: tuple[Paths, Path],
                                                                        tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    script = Script()
    gated = policy(waves=[{"name": "canary", "size": 1}, {"name": "broad", "approval": True}])
    cycle = cycle_for(setting, store, script)
    cycle_id = cycle.run(gated, force_window=True)
    assert store.cycle(cycle_id)["status"] == CycleStatus.AWAITING_APPROVAL  # type: ignore[index]
    assert [w["status"] for w in store.waves(cycle_id)] == ["passed", "awaiting-approval"]
    assert cycle.drive(cycle_id) == CycleStatus.AWAITING_APPROVAL  # driving again without a decision: still waiting
    approve(store, cycle_id, "broad", "ops-lead")
    assert cycle.drive(cycle_id) == CycleStatus.COMPLETED
    assert end_states(store, cycle_id) == dict.fromkeys(HOSTS, "patched")
    assert sorted(script.deployed) == sorted(HOSTS)


def test_a_rejected_wave_is_skipped_and_the_cycle_halts(setting: tuple[Paths, Path], tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    cycle = cycle_for(setting, store, Script())
    cycle_id = cycle.run(policy(waves=[{"name": "canary", "size": 1}, {"name": "broad", "approval": True}]),
                         force_window=True)
    approve(store, cycle_id, None, "ops-lead", "not this week", approved=False)
    assert cycle.drive(cycle_id) == CycleStatus.HALTED
    assert [w["status"] for w in store.waves(cycle_id)] == ["passed", "skipped"]
    assert sorted(end_states(store, cycle_id).values()) == ["not-reached", "not-reached", "patched"]


# every point at which an orchestrator can die: each playbook run of a cycle in order
DEATHS = ["01-scan", "02-stage", "03-deploy-wave0", "03-deploy-wave1", "04-confirm"]


@pytest.mark.parametrize("die_at", DEATHS)
def test_a_resume_from_every_point_ends_as_an_uninterrupted_cycle(setting: tuple[Paths, Path], tmp_path: Path,
                                                                  die_at: str) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    script = Script(die_at=die_at)
    cycle = cycle_for(setting, store, script)
    with pytest.raises(Died):
        cycle.run(policy(), force_window=True)
    (cycle_id,) = [r["id"] for r in store.rows("cycles")]
    stopped = CycleStatus(store.cycle(cycle_id)["status"])  # type: ignore[index]
    assert not stopped.final
    assert cycle.drive(cycle_id) == CycleStatus.COMPLETED
    assert end_states(store, cycle_id) == dict.fromkeys(HOSTS, "patched")
    # a wave that finished before the death is never deployed again; the interrupted one may be
    assert sorted(script.deployed) == sorted(HOSTS), (stopped, script.idents)
    assert script.idents.count("02-stage") == 1


@pytest.mark.parametrize("die_at", ["05-health-wave0-0-soak", "03-deploy-wave1"])
def test_a_resume_after_a_death_in_or_after_a_soak_ends_as_an_uninterrupted_cycle(
        setting: tuple[Paths, Path], tmp_path: Path, die_at: str) -> None:
    """The canary soaks (a short soak, then the health check after it); a death during the check
    after the soak leaves the wave soaking, and the resume checks again instead of deploying."""
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    script = Script(die_at=die_at)
    cycle = cycle_for(setting, store, script)
    soaked = policy(waves=[{"name": "canary", "size": 1, "soak_minutes": 0.002}, {"name": "broad"}])
    with pytest.raises(Died):
        cycle.run(soaked, force_window=True)
    (cycle_id,) = [r["id"] for r in store.rows("cycles")]
    if die_at.endswith("-soak"):
        assert store.waves(cycle_id)[0]["status"] == WaveStatus.SOAKING
    assert cycle.drive(cycle_id) == CycleStatus.COMPLETED
    assert sorted(script.deployed) == sorted(HOSTS)  # the soaked canary was not deployed again
    assert end_states(store, cycle_id) == dict.fromkeys(HOSTS, "patched")


def test_a_rollback_on_demand_covers_a_wave_left_soaking_and_ends_the_open_waves(setting: tuple[Paths, Path],
                                                                               tmp_path: Path) -> None:
    """The orchestrator died while the canary soaked; ops rolls the cycle back instead of going
    on: the soaking canary is rolled back, its wave ends failed, the broad wave skipped."""
    from patchwave.patching.rollback import rollback

    paths, _inventory = setting
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    script = Script(die_at="05-health-wave0-0-soak")
    with pytest.raises(Died):
        cycle_for(setting, store, script).run(
            policy(waves=[{"name": "canary", "size": 1, "soak_minutes": 0.002}, {"name": "broad"}]), force_window=True)
    (cycle_id,) = [r["id"] for r in store.rows("cycles")]
    assert rollback(paths, store, cycle_id, runners=lambda _w, _c, _p: ScriptedRunner(script)) == CycleStatus.ROLLED_BACK
    assert script.rolled_back == {"db1"}
    assert [(w["name"], w["status"]) for w in store.waves(cycle_id)] == [("canary", "failed"), ("broad", "skipped")]
    assert end_states(store, cycle_id)["db1"] == "rolled-back"


def test_a_resume_of_a_failed_canary_that_died_before_its_rollback_still_rolls_it_back(
        setting: tuple[Paths, Path], tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    script = Script(fail_deploy={"db1"}, die_at="06-rollback-wave0")
    cycle = cycle_for(setting, store, script)
    with pytest.raises(Died):
        cycle.run(policy(gates={"rollback_on_failure": True}), force_window=True)
    (cycle_id,) = [r["id"] for r in store.rows("cycles")]
    assert store.waves(cycle_id)[0]["status"] == WaveStatus.FAILED and not script.rolled_back
    assert cycle.drive(cycle_id) == CycleStatus.HALTED
    assert script.rolled_back == {"db1"}
    assert end_states(store, cycle_id)["db1"] == "rolled-back"


def test_the_store_refuses_every_move_the_tables_do_not_allow(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    for old in CycleStatus:
        for new in CycleStatus:
            name = f"{old}-{new}"
            store.create_cycle(name, "inv", {"name": "p"})
            with store.engine.begin() as conn:
                from sqlalchemy import update

                from patchwave.store.schema import cycles

                conn.execute(update(cycles).where(cycles.c.id == name).values(status=old))
            if new in CYCLE_MOVES[old]:
                store.set_cycle_status(name, new)
                assert store.cycle(name)["status"] == new  # type: ignore[index]
            else:
                with pytest.raises(PatchwaveError, match=f"cannot move from {old} to {new}"):
                    store.set_cycle_status(name, new)
                assert store.cycle(name)["status"] == old  # type: ignore[index]  # nothing written
    store.create_cycle("w", "inv", {"name": "p"})
    store.plan_waves("w", [(i, f"w{i}", ["web1"]) for i in range(len(WaveStatus) ** 2)])
    rows = store.waves("w")
    pairs = [(old, new) for old in WaveStatus for new in WaveStatus]
    for row, (old, new) in zip(rows, pairs, strict=True):
        with store.engine.begin() as conn:
            from sqlalchemy import update

            from patchwave.store.schema import waves

            conn.execute(update(waves).where(waves.c.id == row["id"]).values(status=old))
        move = (store.finish_wave if new.final else store.set_wave_status)
        args: tuple[Any, ...] = (row["id"], new, {}) if new.final else (row["id"], new)
        if new in WAVE_MOVES[old]:
            move(*args)
        else:
            with pytest.raises(PatchwaveError):
                move(*args)
            assert store.waves("w")[rows.index(row)]["status"] == old


def test_a_cycle_s_options_survive_the_store_as_they_were_given(setting: tuple[Paths, Path], tmp_path: Path) -> None:
    from patchwave.models import CycleOptions

    store = RecordingStore(f"sqlite:///{tmp_path / 'pw.db'}")
    (tmp_path / "osv").mkdir()
    cycle_id = cycle_for(setting, store, Script()).run(
        policy(), advisories_path=tmp_path / "osv", policy_dir=tmp_path, force_window=True, skip_soak=True,
        carry_over=("missed", [("Debian:12", "pw-libssl", "1.0-2"), ("Debian:11", "pw-libssl", "0.9.8-5+deb11u1")]))
    options = CycleOptions.from_stored(store.cycle(cycle_id)["options"])  # type: ignore[index]
    assert options == CycleOptions(hosts=("db1", "web1", "web2"), policy_dir=tmp_path, advisories=tmp_path / "osv",
                                   force_window=True, skip_soak=True, carry_over=(
                                       "missed", (("Debian:11", "pw-libssl", "0.9.8-5+deb11u1"),
                                                  ("Debian:12", "pw-libssl", "1.0-2"))))
    assert CycleOptions.from_stored(options.stored()) == options
    assert CycleOptions.from_stored(None) == CycleOptions()  # a store from before schema 3


def test_the_moves_that_matter_are_the_ones_the_table_allows() -> None:
    """Named, not derived from the table: what a resume, an approval and a rollback need, and
    the moves that would hide a defect (a finished cycle started again, a wave passed without
    running, a history that skips the manifest)."""
    c, w = CycleStatus, WaveStatus
    needed = [(c.STARTED, c.APPROVED), (c.APPROVED, c.DEPLOYING), (c.DEPLOYING, c.DEPLOYING),
              (c.DEPLOYING, c.AWAITING_APPROVAL), (c.AWAITING_APPROVAL, c.DEPLOYING), (c.CONFIRMING, c.DEPLOYING),
              (c.CONFIRMING, c.HALTED), (c.HALTED, c.ROLLED_BACK), (c.AWAITING_APPROVAL, c.ROLLED_BACK)]
    refused = [(c.STARTED, c.COMPLETED), (c.COMPLETED, c.DEPLOYING), (c.ROLLED_BACK, c.COMPLETED),
               (c.STARTED, c.DEPLOYING), (c.HALTED, c.CONFIRMING)]
    assert all(new in CYCLE_MOVES[old] for old, new in needed)
    assert not any(new in CYCLE_MOVES[old] for old, new in refused)
    assert all(new in WAVE_MOVES[old] for old, new in [(w.PENDING, w.RUNNING), (w.RUNNING, w.RUNNING),
                                                        (w.SOAKING, w.FAILED), (w.AWAITING_APPROVAL, w.SKIPPED)])
    assert not any(new in WAVE_MOVES[old] for old, new in [(w.PENDING, w.PASSED), (w.PASSED, w.RUNNING),
                                                            (w.SKIPPED, w.RUNNING), (w.FAILED, w.PASSED)])
