"""One patch cycle, end to end: scan → approve (frozen manifest) → stage → deploy in waves with
a gate after each → confirm by rescan → a truthful end state per host.

Every step's results are written to the store before the next step acts on them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.ansible.procs import stop_strays
from patchwave.ansible.runner import Runner
from patchwave.errors import GateHalt, InputError, PatchwaveError
from patchwave.ids import new_cycle_id
from patchwave.models import CycleOptions, Host, Manifest, Wave
from patchwave.patching import changelogs as changelogs_mod
from patchwave.patching import manifest as manifest_mod
from patchwave.patching import waves as waves_mod
from patchwave.patching import windows as windows_mod
from patchwave.patching.advisories import load_advisories
from patchwave.patching.policy import Policy, thin_link_vars
from patchwave.patching.policy import Wave as WaveSpec
from patchwave.patching.rollback import rollback_vars
from patchwave.patching.runs import RunnerFactory, playbook_runner, record_results
from patchwave.patching.scan import SCAN, scan_hosts, updates_from_scan
from patchwave.patching.status import package_rows
from patchwave.paths import Paths
from patchwave.progress import Display, quiet
from patchwave.states import DEPLOYED_WAVES, FAILED_STATES, PATCHED_STATES, CycleStatus, HostState, WaveStatus
from patchwave.store import Store

STAGE = "patchwave.endpoint.stage_updates"
APPLY = "patchwave.endpoint.apply_updates"
REBOOT = "ansible.builtin.reboot"


@dataclass
class _Rollout:
    """How the rollout stands between waves: failures so far and whether it stopped."""

    failed_so_far: int = 0
    halted: bool = False
    reason: str = ""

    def stop(self, reason: str) -> None:
        if not self.halted:
            self.halted, self.reason = True, reason


@dataclass
class _Run:
    """What one drive of a cycle works with: read from the store when it starts (the cycle, its
    options and hosts), filled in as its steps go (the manifest, staging, the rollout)."""

    cycle_id: str
    policy: Policy
    options: CycleOptions
    hosts: list[Host]
    runner: Runner
    work: Path
    manifest: Manifest | None = None
    targets: list[Host] = field(default_factory=list)  # the hosts with approved updates
    deployable: list[Host] = field(default_factory=list)  # ... whose staging did not fail
    extravars: dict[str, Any] = field(default_factory=dict)
    scan_failed: dict[str, str] = field(default_factory=dict)
    stage_failed: dict[str, str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    rollout: _Rollout = field(default_factory=_Rollout)


class Cycle:
    """The cycle's state machine: each step reads where the store says the cycle is, acts, and
    stores the result before the next step. `runners` makes the runner for a cycle's work
    directory (ansible-runner by default; the unit tests give a scripted one)."""

    def __init__(self, paths: Paths, store: Store, inventory: Path, display: Display | None = None,
                 runners: RunnerFactory | None = None) -> None:
        self.paths = paths
        self.store = store
        self.inventory = inventory
        self.display = display or quiet()
        self.runners: RunnerFactory = runners or (
            lambda work, cycle_id, policy: playbook_runner(self.paths, self.store, self.display, work, cycle_id, policy))
        self.say = self.display.say

    def run(self, policy: Policy | None = None, advisories_path: Path | None = None,
            policy_dir: Path | None = None, force_window: bool = False,
            emergency: list[str] | None = None, skip_soak: bool = False,
            carry_over: tuple[str, list[tuple[str, str, str]]] | None = None) -> str:
        """Start and drive one cycle under `policy` (the built-in default when None).
        `carry_over` (missed cycle, its approvals as (ecosystem of the host approved for, name,
        version)) makes it a catch-up: each host gets the approvals made for its release and no
        approval rule is evaluated."""
        policy = policy or Policy()
        # all input is read and validated before anything is stored or any host is touched
        self.paths.retention  # noqa: B018 - reading it validates PATCHWAVE_ARTIFACT_RETENTION_DAYS
        hosts = waves_mod.targeted(load_hosts(self.inventory), policy.targets)
        if not hosts:
            raise InputError(f"{self.inventory}: the policy's targets match no host")
        first = waves_mod.plan(hosts, policy.waves)[0]  # waves that cannot place every host fail here
        closed = self._window_closed(policy, hosts, first)
        if closed and not force_window:
            raise GateHalt(f"{closed}; nothing was started (pass --force-window to start anyway; it is recorded)")
        known = load_advisories(policy, policy_dir, advisories_path)  # a bad advisory source fails here
        unknown = sorted(set(emergency or []) - {i for a in known for i in a.names})
        if unknown:
            raise InputError(f"--advisory {', '.join(unknown)}: not in the advisory sources "
                             f"({len(known)} advisories loaded)")
        cycle_id = new_cycle_id()
        options = CycleOptions(
            hosts=tuple(h.name for h in hosts), policy_dir=policy_dir, advisories=advisories_path,
            force_window=force_window, skip_soak=skip_soak, emergency=tuple(sorted(emergency or [])),
            carry_over=(carry_over[0], tuple(sorted((e, n, v) for e, n, v in carry_over[1]))) if carry_over else None)
        self.store.create_cycle(cycle_id, str(self.inventory), policy.model_dump(mode="json"), options.stored())
        self.store.log(cycle_id, "start", f"cycle started on {len(hosts)} host(s) under policy {policy.name!r}")
        if closed:
            self.store.log(cycle_id, "forced", f"started outside the maintenance window: {closed}")
        if skip_soak:
            self.store.log(cycle_id, "forced", "soak times are skipped in this cycle (--skip-soak)")
        if emergency:
            self.store.log(cycle_id, "emergency", f"out-of-cycle emergency for {', '.join(sorted(emergency))}")
        if carry_over is not None:
            per_release = Counter(ecosystem or "unknown release" for ecosystem, _name, _version in carry_over[1])
            self.store.log(cycle_id, "catch-up", f"catch-up of {', '.join(h.name for h in hosts)} for cycle "
                                                 f"{carry_over[0]}: its approvals carried over to hosts of the release "
                                                 "they were made for ("
                                                 + ", ".join(f"{e}: {n}" for e, n in sorted(per_release.items())) + ")")
        self.drive(cycle_id)
        return cycle_id

    def drive(self, cycle_id: str) -> CycleStatus:
        """Take the cycle from wherever the store says it is to its end. Every step is recorded
        before the next acts, and every step is idempotent on the hosts, so driving a cycle that
        was interrupted (`cycle resume`) neither patches a host twice nor forgets one."""
        if self.store.cycle(cycle_id) is None:
            raise InputError(f"no cycle {cycle_id!r} in the store")
        self.store.lock(cycle_id)
        try:
            row = self.store.cycle(cycle_id) or {}  # read under the lock: as the cycle stands now
            if CycleStatus(row["status"]).final:
                raise InputError(f"cycle {cycle_id} already ended ({row['status']}); nothing to resume")
            for stray in stop_strays(cycle_id):
                self.store.log(cycle_id, "resume", f"stopped {stray}, left running by an orchestrator that died")
                self.say(f"[{cycle_id}] stopped {stray}, left running by an orchestrator that died")
            return self._drive(cycle_id, row)
        finally:
            self.store.unlock(cycle_id)

    def _drive(self, cycle_id: str, row: dict[str, Any]) -> CycleStatus:
        run = self._open(cycle_id, row)
        self._approve(run, row)  # 2 scan and 3 approve: one frozen manifest for the whole cycle
        self._stage(run)  # 4 stage
        self.store.set_cycle_status(cycle_id, CycleStatus.DEPLOYING)
        if self._deploy(run) is WaveStatus.AWAITING_APPROVAL:  # 5 deploy, wave by wave
            return CycleStatus.AWAITING_APPROVAL
        return self._confirm(run)  # 6 confirm by rescan, one end state per host

    def _open(self, cycle_id: str, row: dict[str, Any]) -> _Run:
        """What this drive works with, from the stored cycle: its policy, options and hosts."""
        options = CycleOptions.from_stored(row.get("options"))
        policy = Policy.model_validate_json(json.dumps(row["policy"]))
        names = set(options.hosts)
        hosts = [h for h in load_hosts(self.inventory) if h.name in names]
        missing = sorted(names - {h.name for h in hosts})
        if missing:
            raise InputError(f"{self.inventory}: host(s) of cycle {cycle_id} no longer in the inventory: {', '.join(missing)}")
        work = self.paths.state / "cycles" / cycle_id
        work.mkdir(parents=True, exist_ok=True)
        return _Run(cycle_id, policy, options, hosts, self.runners(work / "runs", cycle_id, policy), work)

    def _approve(self, run: _Run, row: dict[str, Any]) -> None:
        """Scan and decide, once: the manifest is frozen in the store; a resume reads it back."""
        if row["manifest"] is None:
            advisories = load_advisories(run.policy, run.options.policy_dir, run.options.advisories)
            self.say(f"[{run.cycle_id}] scanning {len(run.hosts)} host(s)")
            scan_hosts(self.store, run.runner, self.inventory, run.hosts, run.cycle_id,
                       self._thin_links(run, run.hosts, "scan"))
            updates = [u for scan in self.store.scans(run.cycle_id, "scan") if scan["ok"]
                       for u in updates_from_scan(scan["host"], scan["result"])]
            self.store.save_manifest(manifest_mod.build(
                run.cycle_id, updates, advisories, run.policy.approval, only=set(run.options.emergency) or None,
                sla_days=run.policy.sla_days, carry=run.options.carry_over))
        run.manifest = Manifest(run.cycle_id, str(row["created_at"]), tuple(self.store.decisions(run.cycle_id)))
        for scan in self.store.scans(run.cycle_id, "scan"):
            if not scan["ok"]:
                run.scan_failed[scan["host"]] = str(scan["result"].get("msg", "scan failed"))
                if scan["result"].get("unreachable"):
                    run.unreachable.add(scan["host"])
        manifest_file = run.work / "manifest.json"
        if not manifest_file.exists():
            manifest_file.write_text(json.dumps(run.manifest.as_playbook_vars(), indent=2, sort_keys=True) + "\n")
            manifest_file.chmod(0o444)
        run.targets = [h for h in run.hosts if h.name in run.manifest.hosts_with_packages()]
        self.say(f"[{run.cycle_id}] manifest: {sum(d.approved for d in run.manifest.decisions)} approved update(s) "
                 f"on {len(run.targets)} host(s)")
        run.extravars = {"patchwave_manifest_file": str(manifest_file), "deploy_reboot_policy": run.policy.reboot,
                         "deploy_restart_policy": run.policy.restart, **run.policy.user_notice.extravars()}

    def _stage(self, run: _Run) -> None:
        """Stage the hosts without a stage result yet (staging is idempotent)."""
        staged = self.store.latest_results(run.cycle_id, "stage")
        todo = [h for h in run.targets if h.name not in staged]
        if todo:
            result = run.runner.run("stage.yml", self.inventory, ident="02-stage", limit=[h.name for h in todo],
                                    extravars={**run.extravars,
                                               "patchwave_thin_links": self._thin_links(run, todo, "stage")})
            record_results(self.store, run.cycle_id, "stage", STAGE, result, todo)
            for host in todo:  # what each staged package's changelog says (urgency, CVEs), for the reports
                self.store.add_changelogs(run.cycle_id, changelogs_mod.from_stage_result(
                    host.name, result.result(STAGE, host.name) or {}))
            staged = self.store.latest_results(run.cycle_id, "stage")
        run.stage_failed = {h: r["message"] for h, r in staged.items() if not r["ok"]}
        run.deployable = [h for h in run.targets if h.name not in run.stage_failed]

    def _deploy(self, run: _Run) -> WaveStatus | None:
        """Every wave in turn, from the plan recorded before the first one; the status of the
        wave the rollout waits at, if it waits at one."""
        if not self.store.waves(run.cycle_id):
            self.store.plan_waves(run.cycle_id, [(w.index, w.name, list(w.hosts))
                                                 for w in waves_mod.plan(run.deployable, run.policy.waves)])
        target_names = {t.name for t in run.targets}
        run.rollout = _Rollout(failed_so_far=len(run.stage_failed) + len([h for h in run.scan_failed
                                                                           if h in target_names]))
        for wave_row in self.store.waves(run.cycle_id):
            if not self.store.holds_lock(run.cycle_id):
                raise PatchwaveError(f"cycle {run.cycle_id}: this orchestrator lost the cycle's lock (its lease ran "
                                     "out and another one took it over); stopping before the next wave")
            if self._wave(run, wave_row) is WaveStatus.AWAITING_APPROVAL:
                return WaveStatus.AWAITING_APPROVAL
        return None

    def _confirm(self, run: _Run) -> CycleStatus:
        self.store.set_cycle_status(run.cycle_id, CycleStatus.CONFIRMING)
        reached = {h for w in self.store.waves(run.cycle_id) if w["status"] in DEPLOYED_WAVES for h in w["hosts"]}
        confirmed: dict[str, dict[str, Any]] = {}
        if reached:
            confirm = run.runner.run("confirm.yml", self.inventory, ident="04-confirm", limit=sorted(reached),
                                     extravars=run.extravars)
            for name in sorted(reached):
                res = confirm.result(SCAN, name)
                ok = res is not None and not res.get("failed")
                outcome = confirm.hosts.get(name)
                if outcome is not None and outcome.unreachable:
                    run.unreachable.add(name)
                self.store.add_scan(run.cycle_id, name, "confirm", ok, res or {},
                                    updates_from_scan(name, res) if ok and res else [])
                if ok and res:
                    confirmed[name] = res
        status = self._end_states(run, confirmed)
        if run.rollout.halted:
            status = CycleStatus.HALTED
        self.store.set_cycle_status(run.cycle_id, status, finished=True)
        reason = run.rollout.reason
        self.store.log(run.cycle_id, "finish", f"cycle {status}{': ' + reason if reason else ''}")
        return status

    def _wave(self, run: _Run, wave_row: dict[str, Any]) -> WaveStatus:
        """Take one wave from its stored status to its end: approval gate → window → deploy →
        health gate → soak → health gate again. Returns the wave's status; each step is stored
        before the next acts, so a resume picks up at the step that was interrupted."""
        wave = Wave(wave_row["idx"], wave_row["name"], tuple(wave_row["hosts"]))
        status, gate_info = WaveStatus(wave_row["status"]), dict(wave_row["gate"] or {})
        if status.final:
            return self._ended(run, wave, status, gate_info)
        if run.rollout.halted:
            self.store.finish_wave(wave_row["id"], WaveStatus.SKIPPED, {"reason": f"not started: {run.rollout.reason}"})
            return WaveStatus.SKIPPED
        spec = next(s for s in run.policy.waves if s.name == wave.name)
        if status in (WaveStatus.PENDING, WaveStatus.AWAITING_APPROVAL):
            stopped = self._may_start(run, wave, spec, int(wave_row["id"]))
            if stopped is not None:
                return stopped
        if status is WaveStatus.RUNNING:
            self.store.log(run.cycle_id, "resume", f"wave {wave.name} was interrupted: deploying it again "
                                                   "(hosts already at the manifest version are left alone)")
        wave_hosts = [h for h in run.deployable if h.name in wave.hosts]
        wave_id = int(wave_row["id"])
        if status is not WaveStatus.SOAKING:
            wave_id, status, gate_info = self._deploy_wave(run, wave, spec, wave_hosts)
        if status is WaveStatus.SOAKING:
            gate_info = self._soak(run, wave, spec, gate_info)
        run.rollout.failed_so_far = int(gate_info["total_failed"])
        passed = bool(gate_info["passed"])
        self.store.finish_wave(wave_id, WaveStatus.PASSED if passed else WaveStatus.FAILED, gate_info)
        self.store.log(run.cycle_id, "gate", f"wave {wave.name}: {'passed' if passed else 'FAILED'}: "
                                             f"{gate_info['reason']}")
        if not passed:
            self.say(f"[{run.cycle_id}] wave {wave.name} failed its gate ({gate_info['reason']}): stopping the rollout")
            run.rollout.stop(f"wave {wave.name} failed its gate: {gate_info['reason']}")
            if run.policy.gates.rollback_on_failure:
                self._roll_back_wave(run, wave, wave_hosts)
        return WaveStatus.PASSED if passed else WaveStatus.FAILED

    def _ended(self, run: _Run, wave: Wave, status: WaveStatus, gate_info: dict[str, Any]) -> WaveStatus:
        """A wave that ended before this drive: the rollout goes on from what it says (and a
        failed wave whose rollback never ran, because the orchestrator died, is rolled back now)."""
        run.rollout.failed_so_far = int(gate_info.get("total_failed", run.rollout.failed_so_far))
        if status is WaveStatus.FAILED:
            run.rollout.stop(f"wave {wave.name} failed its gate: {gate_info.get('reason', '')}")
            rolled = {h for h in self.store.latest_results(run.cycle_id, "rollback") if h in wave.hosts}
            if run.policy.gates.rollback_on_failure and not rolled:
                self.store.log(run.cycle_id, "resume", f"wave {wave.name} failed its gate but was not rolled back yet")
                self._roll_back_wave(run, wave, [h for h in run.deployable if h.name in wave.hosts])
        elif status is WaveStatus.SKIPPED:
            run.rollout.stop(str(gate_info.get("reason", "an earlier wave stopped the rollout")))
        return status

    def _may_start(self, run: _Run, wave: Wave, spec: WaveSpec, wave_id: int) -> WaveStatus | None:
        """None when the wave may start now: approved (when it needs an approval) and inside its
        window (or the window forced); otherwise the status it stops with."""
        refused = self._approval_gate(run, wave, spec, wave_id)
        if refused is not None:
            return refused
        closed = self._window_closed(run.policy, run.hosts, wave)
        if closed and not run.options.force_window:
            self.say(f"[{run.cycle_id}] {closed}: stopping the rollout")
            self.store.finish_wave(wave_id, WaveStatus.SKIPPED, {"reason": closed})
            run.rollout.stop(closed)
            return WaveStatus.SKIPPED
        if closed:
            self.store.log(run.cycle_id, "forced", f"wave {wave.name} started outside its window: {closed}")
        return None

    def _deploy_wave(self, run: _Run, wave: Wave, spec: WaveSpec,
                     wave_hosts: list[Host]) -> tuple[int, WaveStatus, dict[str, Any]]:
        """Deploy the wave, health-check it, and decide its gate; a passing wave with a soak starts
        soaking (stored with when it ends). Returns (wave id, status, gate)."""
        self.say(f"[{run.cycle_id}] wave {wave.index} ({wave.name}): {', '.join(wave.hosts)}")
        wave_id = self.store.start_wave(run.cycle_id, wave.index, wave.name, list(wave.hosts))
        result = run.runner.run("deploy.yml", self.inventory, ident=f"03-deploy-wave{wave.index}",
                                limit=list(wave.hosts), extravars={**run.extravars, "patchwave_serial": spec.concurrency})
        failed = record_results(self.store, run.cycle_id, "deploy", APPLY, result, wave_hosts, wave=wave.index)
        unhealthy = self._health(run, [h for h in wave.hosts if h not in failed], wave.index)
        gate_info = self._gate(run, wave, spec, {**failed, **unhealthy}, run.rollout.failed_so_far)
        if not (gate_info["passed"] and spec.soak_minutes):
            return wave_id, WaveStatus.RUNNING, gate_info
        if run.options.skip_soak:
            self.store.log(run.cycle_id, "forced", f"wave {wave.name}: soak of {spec.soak_minutes:g} min "
                                                   "skipped (--skip-soak)")
            return wave_id, WaveStatus.RUNNING, gate_info
        until = datetime.now(UTC) + timedelta(minutes=spec.soak_minutes)
        gate_info["soak_until"] = until.isoformat()
        self.store.set_wave_status(wave_id, WaveStatus.SOAKING, gate_info)
        self.store.log(run.cycle_id, "soak", f"wave {wave.name} soaks until {until:%Y-%m-%d %H:%M:%S} UTC")
        return wave_id, WaveStatus.SOAKING, gate_info

    def _roll_back_wave(self, run: _Run, wave: Wave, wave_hosts: list[Host]) -> None:
        """The automatic rollback of a wave whose gate failed; recorded per host and in the log."""
        self.say(f"[{run.cycle_id}] rolling back wave {wave.name}: {', '.join(wave.hosts)}")
        back = run.runner.run("rollback.yml", self.inventory, ident=f"06-rollback-wave{wave.index}",
                              limit=list(wave.hosts), extravars=rollback_vars(run.cycle_id, run.policy))
        undone = record_results(self.store, run.cycle_id, "rollback", "patchwave.endpoint.rollback_updates", back,
                                wave_hosts, wave=wave.index)
        self.store.log(run.cycle_id, "rollback", f"wave {wave.name} rolled back after its gate failed: "
                                                 f"{len(wave_hosts) - len(undone)} of {len(wave_hosts)} host(s)"
                       + (f"; failed on {', '.join(sorted(undone))}" if undone else ""))

    def _approval_gate(self, run: _Run, wave: Wave, spec: WaveSpec, wave_id: int) -> WaveStatus | None:
        """None when the wave may go on; otherwise the status it stops with (waiting or rejected)."""
        if not spec.approval:
            return None
        cycle_id = run.cycle_id
        decision = next((a for a in reversed(self.store.approvals(cycle_id)) if a["wave"] == wave.index), None)
        if decision is None:
            command = f"patchwave cycle approve {cycle_id} --wave {wave.name}"
            self.store.set_wave_status(wave_id, WaveStatus.AWAITING_APPROVAL)
            self.store.set_cycle_status(cycle_id, CycleStatus.AWAITING_APPROVAL)
            self.store.log(cycle_id, "approval", f"wave {wave.name} waits for a manual approval: {command}")
            self.say(f"[{cycle_id}] wave {wave.name} waits for a manual approval: {command}")
            return WaveStatus.AWAITING_APPROVAL
        if not decision["approved"]:
            reason = f"wave {wave.name} rejected by {decision['by']}" + (
                f": {decision['comment']}" if decision["comment"] else "")
            self.store.finish_wave(wave_id, WaveStatus.SKIPPED, {"reason": reason})
            run.rollout.stop(reason)
            return WaveStatus.SKIPPED
        self.store.set_cycle_status(cycle_id, CycleStatus.DEPLOYING)
        return None

    @staticmethod
    def _gate(run: _Run, wave: Wave, spec: WaveSpec, failed: dict[str, str], failed_before: int) -> dict[str, Any]:
        verdict = waves_mod.gate({h: h not in failed for h in wave.hosts}, spec.failure_budget, failed_before,
                                 run.policy.gates.failure_budget, len(run.hosts))
        return {"passed": verdict.passed, "failed": sorted(failed), "reasons": failed, "reason": verdict.reason,
                "wave_budget": verdict.wave_budget, "global_budget": verdict.global_budget,
                "wave_failed": verdict.wave_failed, "total_failed": verdict.total_failed}

    def _soak(self, run: _Run, wave: Wave, spec: WaveSpec, gate_info: dict[str, Any]) -> dict[str, Any]:
        """Wait out the soak (what is left of it after a resume), then check the wave's healthy
        hosts again — reachable, and passing the health checks; the gate is decided anew."""
        until = datetime.fromisoformat(str(gate_info["soak_until"]))
        left = (until - datetime.now(UTC)).total_seconds()
        if left > 0:
            self.say(f"[{run.cycle_id}] wave {wave.name} soaking for {left / 60:.1f} more min "
                     f"(until {until:%H:%M:%S} UTC)")
            time.sleep(left)
        failed: dict[str, str] = dict(gate_info.get("reasons") or {})
        still = [h for h in wave.hosts if h not in failed]
        unhealthy = self._health(run, still, wave.index, after_soak=True)
        before = int(gate_info["total_failed"]) - int(gate_info["wave_failed"])
        verdict = self._gate(run, wave, spec, {**failed, **unhealthy}, before)
        verdict["soaked_until"] = gate_info["soak_until"]
        if unhealthy:
            verdict["reason"] = f"after the soak: {verdict['reason']}"
        return verdict

    def _thin_links(self, run: _Run, hosts: list[Host], step: str) -> dict[str, dict[str, Any]]:
        """The policy's thin link of each host that has one, as playbook variables; says which."""
        for link in run.policy.thin_links:
            count = sum(1 for h in hosts if run.policy.thin_link(h.groups) is link)
            if count:
                self.say(f"[{run.cycle_id}] {count} host(s) in {', '.join(link.groups)} {step} over a thin link: "
                         f"{link.describe()}")
        return thin_link_vars(run.policy.thin_links, hosts)

    @staticmethod
    def _window_closed(policy: Policy, hosts: list[Host], wave: Wave) -> str:
        """Why the wave may not start now ('' when it may), with when it could."""
        members = [h for h in hosts if h.name in wave.hosts]
        governing = windows_mod.governing(policy.windows, members)
        minutes = next(s.duration_minutes for s in policy.waves if s.name == wave.name)
        now = datetime.now(UTC)
        if windows_mod.may_start(governing, now, minutes):
            return ""
        when = windows_mod.describe(governing, windows_mod.next_start(governing, now, minutes))
        return f"maintenance window closed for wave {wave.name} ({minutes} min needed); next opening: {when}"

    def _health(self, run: _Run, hosts: list[str], wave: int, after_soak: bool = False) -> dict[str, str]:
        """Run the policy's health checks on the wave's patched hosts; {host: why} for the unhealthy.
        After a soak the built-in run happens even without probes: the host must still answer."""
        unhealthy: dict[str, str] = {}
        checks = run.policy.gates.health_checks
        if not hosts or not (checks or after_soak):
            return unhealthy
        probes = [c.model_dump(exclude_none=True) for c in checks if c.playbook is None]
        runs: list[tuple[str, str, dict[str, Any]]] = []
        if probes or after_soak:
            runs.append(("health.yml", "built-in probes", {"health_checks": probes}))
        policy_dir = run.options.policy_dir or Path.cwd()
        runs += [(str((policy_dir / str(c.playbook)).resolve()), f"playbook {c.playbook}", run.extravars)
                 for c in checks if c.playbook is not None]
        when = "after the soak" if after_soak else "after deploy"
        for index, (playbook, label, variables) in enumerate(runs):
            result = run.runner.run(playbook, self.inventory,
                                    ident=f"05-health-wave{wave}-{index}{'-soak' if after_soak else ''}",
                                    limit=hosts, extravars=variables)
            for host in hosts:
                outcome = result.hosts.get(host)
                ok = outcome is not None and outcome.ok
                message = (f"healthy {when}" if ok else
                           f"health check failed {when} ({label}): {outcome.message if outcome else 'no result'}")
                self.store.add_host_result(run.cycle_id, host, "health", ok, bool(outcome and outcome.unreachable),
                                           message, {"check": label}, wave=wave)
                if not ok and host not in unhealthy:
                    unhealthy[host] = message
        return unhealthy

    def _end_states(self, run: _Run, confirmed: dict[str, dict[str, Any]]) -> CycleStatus:
        """One end state per host. Versions come from the confirm rescan, never from what a
        command claimed; the orchestrator adds only what a host cannot say about itself."""
        skipped = {h for w in self.store.waves(run.cycle_id) if w["status"] == WaveStatus.SKIPPED for h in w["hosts"]}
        deploy_failed = self.store.deploy_failures(run.cycle_id)
        decisions = run.manifest.decisions if run.manifest else ()
        worst = CycleStatus.COMPLETED
        for host in run.hosts:
            approved = [d for d in decisions if d.host == host.name and d.approved]
            rescan = confirmed.get(host.name) or {}
            packages = package_rows(approved, rescan.get("installed", {}))
            state, detail = self._end_state(run, host.name, bool(approved), host.name in skipped,
                                            rescan.get("confirmation", {}), deploy_failed.get(host.name))
            self.store.add_end_state(run.cycle_id, host.name, state, packages, detail)
            if state in FAILED_STATES:
                worst = CycleStatus.FAILED
        return worst

    @staticmethod
    def _end_state(run: _Run, host: str, approved: bool, skipped: bool, confirmation: dict[str, Any],  # noqa: PLR0911 - one early return per end-state rule, in their order of precedence
                   deploy_failed: str | None) -> tuple[HostState, str]:
        """A host's end state and why: what the orchestrator knows first (unreachable, a failed
        scan or staging, nothing approved, a wave never started), else what the rescan proves."""
        if host in run.unreachable:
            return HostState.UNREACHABLE, run.scan_failed.get(host) or "host could not be reached"
        if host in run.scan_failed:
            return HostState.FAILED, f"scan failed: {run.scan_failed[host]}"
        if not approved:
            return HostState.EXCLUDED, "no approved updates"
        if host in run.stage_failed:
            return HostState.FAILED, f"staging failed (nothing installed): {run.stage_failed[host]}"
        if skipped:
            return HostState.NOT_REACHED, "the rollout stopped before this host's wave"
        if not confirmation:
            return HostState.FAILED, "no confirm rescan result"
        state, detail = HostState(confirmation["state"]), str(confirmation["detail"])
        if deploy_failed is not None and state in PATCHED_STATES:
            return HostState.FAILED, f"deploy failed: {deploy_failed}"
        if deploy_failed is not None:
            return state, f"{detail}; deploy failed: {deploy_failed}"
        return state, detail


def approve(store: Store, cycle_id: str, wave_name: str | None, by: str, comment: str = "",
            approved: bool = True) -> str:
    """Record the decision on the wave a cycle waits at; returns that wave's name. The cycle
    goes on when it is next driven (`cycle approve` does that unless told not to)."""
    row = store.cycle(cycle_id)
    if row is None:
        raise InputError(f"no cycle {cycle_id!r} in the store")
    waiting = [w for w in store.waves(cycle_id) if w["status"] == WaveStatus.AWAITING_APPROVAL]
    if row["status"] != CycleStatus.AWAITING_APPROVAL or not waiting:
        raise InputError(f"cycle {cycle_id} is {row['status']}, not waiting for an approval")
    wave = waiting[0]
    if wave_name is not None and wave_name != wave["name"]:
        raise InputError(f"cycle {cycle_id} waits for approval of wave {wave['name']!r}, not {wave_name!r}")
    if not by.strip():
        raise InputError("--by: say who decides (a name or an e-mail address)")
    store.add_approval(cycle_id, int(wave["idx"]), str(wave["name"]), approved, by.strip(), comment)
    store.log(cycle_id, "approval", f"wave {wave['name']} {'approved' if approved else 'REJECTED'} by {by.strip()}"
                                    + (f": {comment}" if comment else ""))
    return str(wave["name"])
