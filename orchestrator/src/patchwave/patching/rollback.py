"""Rollback of a cycle on demand: every host it reached back at its versions from before, then
confirmed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.ansible.procs import stop_strays
from patchwave.errors import InputError
from patchwave.models import Manifest
from patchwave.patching.policy import Policy
from patchwave.patching.runs import RunnerFactory, playbook_runner, record_results
from patchwave.patching.scan import SCAN
from patchwave.patching.status import package_rows
from patchwave.paths import Paths
from patchwave.progress import Display, quiet
from patchwave.states import TOUCHED_WAVES, CycleStatus, HostState, WaveStatus
from patchwave.store import Store


def rollback_vars(cycle_id: str, policy: Policy) -> dict[str, Any]:
    """The rollback role follows the policy's reboot and restart settings, as the deploy does."""
    return {"patchwave_cycle_id": cycle_id, "rollback_reboot_policy": policy.reboot,
            "rollback_restart_policy": policy.restart}


def rollback(paths: Paths, store: Store, cycle_id: str, display: Display | None = None,
             runners: RunnerFactory | None = None) -> CycleStatus:
    """Roll back every host a cycle reached, then confirm: each ends rolled-back or failed. A wave
    still open ends with it (deploying or soaking: failed; not started: skipped)."""
    if store.cycle(cycle_id) is None:
        raise InputError(f"no cycle {cycle_id!r} in the store")
    store.lock(cycle_id)
    try:
        row = store.cycle(cycle_id) or {}  # read under the lock: as the cycle stands now
        waves = store.waves(cycle_id)
        reached = sorted({h for w in waves if w["status"] in TOUCHED_WAVES for h in w["hosts"]})
        if not reached:
            raise InputError(f"cycle {cycle_id} reached no host: nothing to roll back")
        inventory = Path(row["inventory"])
        for stray in stop_strays(cycle_id):
            store.log(cycle_id, "rollback", f"stopped {stray}, left running by an orchestrator that died")
        work = paths.state / "cycles" / cycle_id
        policy = Policy.model_validate_json(json.dumps(row["policy"]))
        make = runners or (lambda work_dir, ident, rules: playbook_runner(paths, store, display or quiet(), work_dir,
                                                                          ident, rules))
        runner = make(work / "runs", cycle_id, policy)
        hosts = [h for h in load_hosts(inventory) if h.name in reached]
        back = runner.run("rollback.yml", inventory, ident="07-rollback", limit=reached,
                          extravars=rollback_vars(cycle_id, policy))
        failed = record_results(store, cycle_id, "rollback", "patchwave.endpoint.rollback_updates", back, hosts)
        for wave in waves:
            status = WaveStatus(wave["status"])
            if status in (WaveStatus.RUNNING, WaveStatus.SOAKING):
                store.finish_wave(wave["id"], WaveStatus.FAILED,
                                  {**(wave["gate"] or {}), "reason": f"rolled back on demand while {status}"})
            elif status in (WaveStatus.PENDING, WaveStatus.AWAITING_APPROVAL):
                store.finish_wave(wave["id"], WaveStatus.SKIPPED, {"reason": "not started: the cycle was rolled back"})
        manifest = Manifest(cycle_id, str(row["created_at"]), tuple(store.decisions(cycle_id)))
        confirm = runner.run("confirm.yml", inventory, ident="08-confirm-rollback", limit=reached,
                             extravars={"patchwave_manifest_file": str(work / "manifest.json")})
        for host in hosts:
            res = confirm.result(SCAN, host.name) or {}
            confirmation = res.get("confirmation", {})
            state = HostState(confirmation.get("state", HostState.FAILED)) if host.name not in failed else HostState.FAILED
            detail = confirmation.get("detail", "") if host.name not in failed else f"rollback failed: {failed[host.name]}"
            after = res.get("installed", {})
            packages = package_rows([d for d in manifest.decisions if d.host == host.name and d.approved], after)
            store.add_end_state(cycle_id, host.name, state, packages, detail)
        ended = CycleStatus.ROLLED_BACK if not failed else CycleStatus.FAILED
        store.set_cycle_status(cycle_id, ended, finished=True)
        store.log(cycle_id, "rollback", f"rolled back {len(reached) - len(failed)} of {len(reached)} host(s)")
        return ended
    finally:
        store.unlock(cycle_id)
