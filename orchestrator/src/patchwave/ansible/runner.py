"""The only importer of ansible_runner. Results come from runner status, stats and host
events — never from parsing stdout."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ansible_runner.interface import init_runner

from patchwave.ansible.procs import RUN_MARKER
from patchwave.errors import PatchwaveError
from patchwave.models import HostResult

# Module results the orchestrator reads back, by task action.
TRACKED_ACTIONS = {
    "patchwave.endpoint.pending_updates",
    "patchwave.endpoint.stage_updates",
    "patchwave.endpoint.apply_updates",
    "patchwave.endpoint.rollback_updates",
    "patchwave.endpoint.assess_baseline",
    "patchwave.endpoint.remediate_baseline",
    "ansible.builtin.reboot",
}


# What of the orchestrator's own environment ansible-playbook may see: the locale, the user, the
# SSH agent and the team's Ansible settings. Everything else (a store URL with its password, the
# notification secrets named in a notification policy, tokens) stays out of the run and out of
# the artifacts ansible-runner writes (it stores the whole environment of every run).
ENV_ALLOWED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SSH_AUTH_SOCK",
                         "KRB5CCNAME", "VIRTUAL_ENV", "CONTAINERS_CONF"})
ENV_ALLOWED_PREFIXES = ("LC_", "ANSIBLE_")
# Of the ANSIBLE_* names, those that hold a credential stay out (a team that needs one in its
# runs names it in PATCHWAVE_PASS_ENV).
ENV_SECRET = re.compile(r"PASS|TOKEN|SECRET|KEY_DATA|CREDENTIAL", re.IGNORECASE)
# ansible-runner turns host key checking off unless the environment says otherwise, and the
# environment beats ansible.cfg: say it, on every run, whatever the caller's environment holds.
HOST_KEY_CHECKING = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PARAMIKO_HOST_KEY_AUTO_ADD": "False"}
# ssh keeps the first value of an option, and these come before any inventory's own arguments
SSH_ARGS = ("ANSIBLE_SSH_ARGS", "ANSIBLE_SSH_COMMON_ARGS", "ANSIBLE_SSH_EXTRA_ARGS", "ANSIBLE_SCP_EXTRA_ARGS",
            "ANSIBLE_SFTP_EXTRA_ARGS")
_NO_CHECKING = re.compile(r"StrictHostKeyChecking\s*=?\s*(no|off|accept-new)|UserKnownHostsFile\s*=?\s*/dev/null",
                          re.IGNORECASE)


def _credential(name: str) -> bool:
    """An ANSIBLE_* name that holds a credential itself (a file that holds one, such as
    ANSIBLE_VAULT_PASSWORD_FILE, is only its path)."""
    return name.startswith("ANSIBLE_") and bool(ENV_SECRET.search(name)) and not name.endswith(("_FILE", "_PATH"))


def run_environment(runner_env: dict[str, str], outer: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a run gets: what ansible-runner or Patchwave set for it (anything that is
    not simply inherited from `outer`) plus the allowed part of `outer`, host key checking on.
    PATCHWAVE_PASS_ENV adds names (comma-separated; `AWS_*` for a prefix) that the team's own
    set-up needs in its runs, such as a dynamic inventory plugin's cloud credentials."""
    outer = dict(os.environ) if outer is None else outer
    extra = [n.strip() for n in outer.get("PATCHWAVE_PASS_ENV", "").split(",") if n.strip()]
    names = ENV_ALLOWED | {n for n in extra if not n.endswith("*")}
    prefixes = ENV_ALLOWED_PREFIXES + tuple(n[:-1] for n in extra if n.endswith("*") and len(n) > 1)
    kept = {name: value for name, value in runner_env.items()
            if name in names or outer.get(name) != value
            or (name.startswith(prefixes) and not _credential(name))}
    for name in SSH_ARGS:
        found = _NO_CHECKING.search(kept.get(name, ""))
        if found is not None:
            raise PatchwaveError(f"{name} turns SSH host key checking off ({found[0]}); "
                                 "Patchwave checks host keys on every run: remove it and add the hosts' keys to "
                                 "known_hosts")
    return {**kept, **HOST_KEY_CHECKING}


def inert(value: Any) -> Any:
    """`value` with every string marked as Ansible's unsafe text (`__ansible_unsafe` in the JSON
    that ansible-runner writes for extra vars): a `{{ ... }}` from a policy, a baseline, an
    advisory or a host is then passed on as those characters and never rendered as a template
    on the controller. Mapping keys are not templated by Ansible and stay as they are."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, dict):
        return {key: inert(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [inert(item) for item in value]
    return value


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) readable by its owner only: run directories hold the
    inventory, the manifest and every host's results."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


# where the orchestrator keeps ansible-runner's run directories, under the state directory
RUN_DIRS = ("cycles", "scans", "assessments", "remediations", "plans")


def prune_artifacts(state: Path, days: float, keep: Path | None = None) -> list[Path]:
    """Remove the ansible-runner run directories under `state` (see RUN_DIRS) whose last write
    is older than `days`; `keep` is never removed. The store keeps every result; these
    directories only help to debug a recent run."""
    cutoff = time.time() - days * 86400
    removed = []
    patterns = [f"{top}/{'*/' * depth}artifacts" for top in RUN_DIRS for depth in (1, 2, 3)]
    for pattern in patterns:
        for artifacts in state.glob(pattern):
            run_dir = artifacts.parent
            if not (run_dir / "env").is_dir():  # not an ansible-runner directory
                continue
            if keep is not None and run_dir.resolve() == keep.resolve():
                continue
            try:
                newest = max((p.stat().st_mtime for p in run_dir.rglob("*")), default=run_dir.stat().st_mtime)
            except OSError:
                continue
            # ansible-runner writes `status` when a run ends: a run without one may still be going
            # (another orchestrator's silent apt run) or was killed; the latter goes after a day
            finished = any(artifacts.glob("*/status"))
            if newest < (cutoff if finished else min(cutoff, time.time() - 86400)):
                shutil.rmtree(run_dir, ignore_errors=True)
                removed.append(run_dir)
    for plan in state.glob("plans/*"):
        if plan.is_dir() and not any(plan.iterdir()):
            plan.rmdir()
    return removed


def _tools_on_path() -> str:
    """PATH with this interpreter's bin first, so ansible-runner finds the virtualenv's
    ansible-playbook and ansible-inventory even when `patchwave` was called by its full path."""
    bindir = str(Path(sys.executable).parent)
    current = os.environ.get("PATH", "")
    if bindir not in current.split(os.pathsep):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{current}"
    return os.environ["PATH"]


@dataclass(frozen=True)
class TaskEvent:
    """One host's result for one task (or the host's task starting), as ansible-runner reports it."""

    run: str
    host: str
    task: str
    action: str
    kind: str  # start | ok | changed | failed | unreachable | skipped
    message: str = ""


class Observer(Protocol):
    """Who watches runs live (the progress display)."""

    def begin(self, run: str, hosts: list[str]) -> None: ...
    def event(self, event: TaskEvent) -> None: ...
    def end(self, run: str, status: str) -> None: ...


class Recorder(Protocol):
    """Where runs and task events go as they happen (the store)."""

    def start_run(self, cycle_id: str | None, ident: str, playbook: str, hosts: list[str]) -> int: ...
    def add_task_event(self, run_id: int, host: str, task: str, action: str, kind: str, message: str) -> None: ...
    def finish_run(self, run_id: int, status: str, rc: int, seconds: float, handler_seconds: float) -> None: ...


@dataclass(frozen=True)
class Timeouts:
    """Deliberate limits for one invocation: `idle` seconds without any output from
    ansible-playbook (a hung connection or task), `job` seconds in all."""

    idle: int = 20 * 60
    job: int = 4 * 3600


@dataclass
class RunResult:
    status: str  # successful | failed | timeout | canceled
    rc: int
    stats: dict[str, Any]
    seconds: float = 0.0
    hosts: dict[str, HostResult] = field(default_factory=dict)
    # action -> host -> module result
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def result(self, action: str, host: str) -> dict[str, Any] | None:
        return self.results.get(action, {}).get(host)


def _event_message(kind: str, res: dict[str, Any]) -> str:
    if kind in ("failed", "unreachable"):
        return str(res.get("msg") or res.get("stderr") or kind)
    return str(res.get("msg", "")) if isinstance(res.get("msg"), str) else ""


@dataclass(frozen=True)
class Retention:
    """Run directories under `state` older than `days` are removed after each run."""

    state: Path
    days: float


class Runner(Protocol):
    """What runs a playbook for the orchestrator: `PlaybookRunner`, or a scripted one in tests."""

    def run(self, playbook: str, inventory: Path, *, ident: str, limit: list[str] | None = None,
            extravars: dict[str, Any] | None = None, check: bool = False, diff: bool = False) -> RunResult: ...


class PlaybookRunner:
    def __init__(self, root: Path, work_dir: Path, *, recorder: Recorder | None = None, cycle_id: str | None = None,
                 observer: Observer | None = None, timeouts: Timeouts | None = None,
                 retention: Retention | None = None) -> None:
        self.root = root
        self.work_dir = work_dir
        self.recorder = recorder
        self.cycle_id = cycle_id
        self.observer = observer
        self.timeouts = timeouts or Timeouts()
        self.retention = retention

    def run(self, playbook: str, inventory: Path, *, ident: str, limit: list[str] | None = None,  # noqa: PLR0915 - one ansible-runner invocation: the event handler, timeouts and result share the run's state
            extravars: dict[str, Any] | None = None, check: bool = False, diff: bool = False) -> RunResult:
        results: dict[str, dict[str, dict[str, Any]]] = {}
        failures: dict[str, tuple[bool, str]] = {}
        path = playbook if Path(playbook).is_absolute() else str(self.root / "playbooks" / playbook)
        run_id = self.recorder.start_run(self.cycle_id, ident, path, sorted(limit or [])) if self.recorder else None

        def emit(host: str, data: dict[str, Any], kind: str, res: dict[str, Any]) -> None:
            event = TaskEvent(ident, host, str(data.get("task", "")), str(data.get("task_action", "")), kind,
                              _event_message(kind, res))
            if self.recorder is not None and run_id is not None and kind not in ("start", "skipped"):
                self.recorder.add_task_event(run_id, host, event.task, event.action, kind, event.message)
            if self.observer is not None:
                self.observer.event(event)

        handler = [0.0]

        def on_event(event: dict[str, Any]) -> bool:
            began = time.monotonic()
            try:
                return handle(event)
            finally:
                handler[0] += time.monotonic() - began

        def handle(event: dict[str, Any]) -> bool:
            kind = event.get("event", "")
            data = event.get("event_data", {})
            host = data.get("host")
            action = data.get("task_action", "")
            res = data.get("res", {}) if isinstance(data.get("res"), dict) else {}
            if not host:
                return True
            if kind == "runner_on_start":
                emit(host, data, "start", res)
            elif kind == "runner_on_ok":
                if action in TRACKED_ACTIONS:
                    results.setdefault(action, {})[host] = res
                emit(host, data, "changed" if res.get("changed") else "ok", res)
            elif kind == "runner_on_skipped":
                emit(host, data, "skipped", res)
            elif kind == "runner_on_failed":
                if data.get("ignore_errors"):
                    emit(host, data, "ok", res)
                    return True
                failures[host] = (False, str(res.get("msg", "failed")))
                if action in TRACKED_ACTIONS:
                    results.setdefault(action, {})[host] = res
                emit(host, data, "failed", res)
            elif kind == "runner_on_unreachable":
                failures[host] = (True, str(res.get("msg", "unreachable")))
                emit(host, data, "unreachable", res)
            return True

        if self.retention is not None:
            private_dir(self.retention.state)
        private_dir(self.work_dir)
        private = private_dir(self.work_dir / ident)
        envvars = {
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.root / "collections"),
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": _tools_on_path(),
            # marks the ansible-playbook process tree, so that a resumed cycle can stop what a
            # killed orchestrator left running (see stop_strays)
            RUN_MARKER: f"{self.cycle_id or '-'}:{os.getpid()}",
        }
        if self.observer is not None:
            self.observer.begin(ident, sorted(limit or []))
        started = time.monotonic()
        # ansible-runner keeps a file it finds there (a resumed cycle reuses the run's directory)
        for stale in ("env/extravars", "env/envvars", "env/cmdline", "env/settings", "env/passwords", "env/ssh_key"):
            (private / stale).unlink(missing_ok=True)
        runner = init_runner(
            private_data_dir=str(private),
            project_dir=str(self.root),
            playbook=path,
            inventory=str(inventory.resolve()),  # the run happens in its own directory
            limit=",".join(limit) if limit else None,
            extravars=inert(extravars or {}),
            envvars=envvars,
            ident="run",
            quiet=True,
            event_handler=on_event,
            cmdline=" ".join(flag for flag, wanted in (("--check", check), ("--diff", diff)) if wanted) or None,
            settings={"idle_timeout": self.timeouts.idle, "job_timeout": self.timeouts.job},
            rotate_artifacts=1,
        )
        runner.config.env = run_environment(runner.config.env)
        runner.run()
        seconds = time.monotonic() - started
        if self.retention is not None:
            prune_artifacts(self.retention.state, self.retention.days, keep=private)
        status, rc = str(runner.status), int(runner.rc or 0)
        if self.recorder is not None and run_id is not None:
            self.recorder.finish_run(run_id, status, rc, seconds, handler[0])
        if self.observer is not None:
            self.observer.end(ident, status)
        stats: dict[str, Any] = runner.stats or {}
        hosts: dict[str, HostResult] = {}
        if status == "timeout":
            why = (f"stopped: ansible-playbook ran past the job timeout ({self.timeouts.job} s) or was silent "
                   f"longer than the idle timeout ({self.timeouts.idle} s)")
            for host in limit or []:
                failures.setdefault(host, (False, why))
        seen = set(stats.get("ok", {})) | set(stats.get("failures", {})) | set(stats.get("dark", {})) | set(failures)
        for host in sorted(seen):
            unreachable, message = False, ""
            if host in failures:
                unreachable, message = failures[host][0], failures[host][1]
            ok = host not in failures and host not in stats.get("failures", {}) and host not in stats.get("dark", {})
            hosts[host] = HostResult(host=host, ok=ok, unreachable=unreachable or host in stats.get("dark", {}),
                                     message=message)
        return RunResult(status=status, rc=rc, stats=stats, seconds=seconds, hosts=hosts, results=results)


def read_inventory(inventory: Path) -> dict[str, Any]:
    """The inventory as `ansible-inventory --list` sees it (groups, hosts and host vars).

    ansible-inventory runs directly (ansible-runner's wrapper writes the whole JSON to its
    artifacts first, which costs seconds at 10,000 hosts). A plain YAML file that configures no
    inventory plugin can only be read by the `yaml` plugin, so the others are not tried on it
    (each probe parses the file again); anything else gets Ansible's usual plugin list."""
    import json
    import re
    import subprocess

    from patchwave.errors import InputError

    if not inventory.is_file() and not inventory.is_dir():
        raise InputError(f"{inventory}: inventory not found (for the lab, run `patchwave lab up`)")
    env = dict(os.environ, PATH=_tools_on_path(), ANSIBLE_FORCE_COLOR="0")
    if inventory.is_file() and inventory.suffix in (".yml", ".yaml"):
        head = inventory.read_text(errors="replace")
        if not re.search(r"^plugin\s*:", head, re.MULTILINE):
            env["ANSIBLE_INVENTORY_ENABLED"] = "yaml"
    program = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(program) if program.exists() else "ansible-inventory", "-i", str(inventory), "--list"],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    try:
        if proc.returncode != 0:
            raise ValueError(proc.stderr.strip())
        out = json.loads(proc.stdout)
    except ValueError as exc:
        raise InputError(f"{inventory}: cannot read inventory: {exc or proc.stderr.strip()}") from exc
    if not isinstance(out, dict):
        raise InputError(f"{inventory}: cannot read inventory: ansible-inventory did not return a mapping")
    return dict(out)
