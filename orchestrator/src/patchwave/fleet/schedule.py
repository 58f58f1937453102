"""Schedules: which job (discovery, patch scan, baseline assessment, notification digest) runs
how often for which hosts, and the new-device policy. YAML validated before anything runs
(`file:line` errors). Each job fires on its cadence — an interval (`every: 6h`) or a cron line
(`cron: "0 2 * * 1-5"`), in the schedule's time zone — and each of its slots runs once: a run is
recorded in the store with the slot it is for before it starts, so two `schedule run` at once,
or a long-lived `schedule serve` next to a timer, never run one job twice at the same time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.clock import aware
from patchwave.errors import InputError
from patchwave.patching.policy import ThinLink

DOCS = "docs/schedules.md"
_EVERY = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
NEW_DEVICE = Literal["observe", "remediate-now", "patch-now", "next-cycle"]
ANCHOR = datetime(2026, 1, 5, 0, 0)  # a Monday: interval slots are counted from here (local time)
MAX_PERIOD = 366 * 86400.0


class ScheduleError(InputError):
    pass


class _Model(BaseModel):
    model_config = yamlsrc.STRICT

    @field_validator("*")
    @classmethod
    def _no_templates(cls, value: Any) -> Any:
        return yamlsrc.refuse_templates(value)


def period_seconds(text: str) -> float:
    match = _EVERY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an interval like 30m, 6h or 1d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 60:
        raise ValueError(f"{text!r} is shorter than a minute")
    if seconds > MAX_PERIOD:
        raise ValueError(f"{text!r} is longer than a year (366d)")
    return seconds


class Job(_Model):
    name: str = Field(pattern=_NAME.pattern)
    kind: Literal["discover", "scan", "assess", "digest", "catch-up", "ticket-sync"]
    every: str | None = None
    cron: str | None = None
    groups: list[str] = []
    device_types: list[str] = []
    baseline: str | None = None  # assess: a profile or rule file, relative to the schedule file

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is not None:
            period_seconds(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import CroniterError, croniter

        if value is None:
            return value
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron line (minute hour day-of-month month day-of-week)")
        try:
            croniter(value, datetime(2026, 1, 5, tzinfo=UTC)).get_next(datetime)
        except CroniterError as exc:  # the 31st of February: valid fields, no day ever matches
            raise ValueError(f"{value!r} never fires (no date matches it)") from exc
        return value

    @model_validator(mode="after")
    def _one(self) -> Job:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give either every (an interval) or cron (a cron line)")
        if self.baseline is not None and self.kind != "assess":
            raise ValueError("baseline is for assess jobs")
        if self.kind in ("discover", "digest", "ticket-sync") and (self.groups or self.device_types):
            raise ValueError(f"a {self.kind} job covers the whole inventory: no groups or device_types")
        return self

    def period(self) -> float:
        """The nominal time between two slots (for cron: the gap after the latest slot)."""
        if self.every is not None:
            return period_seconds(self.every)
        from croniter import croniter

        zone = UTC
        start = datetime(2026, 1, 5, tzinfo=zone)
        walk = croniter(str(self.cron), start)
        first = walk.get_next(datetime)
        return float((walk.get_next(datetime) - first).total_seconds())

    def last_slot(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The latest time at or before `now` this job was due (aware, UTC)."""
        local = now.astimezone(zone)
        if self.every is not None:
            step = timedelta(seconds=period_seconds(self.every))
            anchor = ANCHOR.replace(tzinfo=zone)
            slots = (local - anchor) // step
            return (anchor + slots * step).astimezone(UTC)
        from croniter import croniter

        # a slot exactly at `now` counts: croniter's get_prev is strictly before its start
        prev: datetime = croniter(str(self.cron), local + timedelta(seconds=1)).get_prev(datetime)
        return prev.astimezone(UTC)

    def covers(self, groups: tuple[str, ...], device_type: str) -> bool:
        return ((not self.groups or any(g in self.groups for g in groups))
                and (not self.device_types or device_type in self.device_types))


class NewDevices(_Model):
    default: NEW_DEVICE = "observe"
    groups: dict[str, NEW_DEVICE] = {}

    def action(self, groups: tuple[str, ...]) -> NEW_DEVICE:
        """The first of the host's groups (in inventory order) with a rule decides; else the default."""
        return next((self.groups[g] for g in groups if g in self.groups), self.default)


class Retry(_Model):
    """Hosts that do not answer are tried again, with backoff, within the window."""

    window_minutes: float = Field(default=30, ge=0, le=24 * 60)
    backoff_seconds: float = Field(default=60, gt=0, le=86400)


class Schedule(_Model):
    version: Literal[1] = 1
    timezone: str = "UTC"
    inventory: str | None = None  # relative to the schedule file; default: the lab's
    # the organisation's baseline profile and exceptions register (relative to the schedule file):
    # what scheduled assessments and new devices are assessed with (a job's own baseline wins)
    baseline: str | None = None
    exceptions: str | None = None
    jobs: list[Job] = Field(min_length=1)
    new_devices: NewDevices = NewDevices()
    retry: Retry = Retry()
    overdue_factor: float = Field(default=1.5, ge=1, le=100)  # a host is overdue after this many periods
    thin_links: list[ThinLink] = []  # scan jobs refresh the lists at these limits / through these relays

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return yamlsrc.time_zone(value)

    @model_validator(mode="after")
    def _names(self) -> Schedule:
        yamlsrc.require_unique([j.name for j in self.jobs], "job names")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load(path: Path, known_groups: set[str] | None = None) -> Schedule:
    data = yamlsrc.load_mapping(path, "schedule", DOCS, ScheduleError)
    schedule = yamlsrc.validate(Schedule, data, path, "schedule", DOCS, ScheduleError)
    for key in ("inventory", "baseline", "exceptions"):
        named = getattr(schedule, key)
        if named is not None and not (path.parent / named).exists():
            raise ScheduleError(f"{yamlsrc.where(path, data, (key,))}: {key}: {named} does not exist (relative to "
                                f"{path.parent})")
    for index, job in enumerate(schedule.jobs):
        if job.baseline is not None and not (path.parent / job.baseline).exists():
            raise ScheduleError(f"{yamlsrc.where(path, data, ('jobs', index, 'baseline'))}: jobs[{index}].baseline: "
                                f"{job.baseline} does not exist (relative to {path.parent})")
    if known_groups is not None:
        places: yamlsrc.GroupPlaces = [(("jobs", i, "groups"), job.groups) for i, job in enumerate(schedule.jobs)]
        places += [(("thin_links", i, "groups"), link.groups) for i, link in enumerate(schedule.thin_links)]
        problem = yamlsrc.unknown_group(path, data, places, known_groups)
        if problem:
            raise ScheduleError(problem)
    # new_devices.groups may name a group that has no host yet: that is when its policy matters
    return schedule


def due(schedule: Schedule, last_runs: dict[str, datetime], now: datetime) -> list[tuple[Job, datetime]]:
    """The jobs whose latest slot has not run yet: (job, slot). `last_runs` maps a job to the slot
    of its latest recorded run. A job never run before is due at once."""
    found = []
    for job in schedule.jobs:
        slot = job.last_slot(now, schedule.zone)
        ran = last_runs.get(job.name)
        if ran is None or aware(ran) < slot:
            found.append((job, slot))
    return found


def next_slot(schedule: Schedule, job: Job, now: datetime) -> datetime:
    """When the job is due next after `now`."""
    if job.every is not None:
        return job.last_slot(now, schedule.zone) + timedelta(seconds=period_seconds(job.every))
    from croniter import croniter

    nxt: datetime = croniter(str(job.cron), now.astimezone(schedule.zone)).get_next(datetime)
    return nxt.astimezone(UTC)


_UNSAFE_IN_UNIT = re.compile(r"[\x00-\x1f\x7f\\]")


def _unit_text(value: str, what: str) -> str:
    """A path as it may stand in a unit file: a line break would end the setting and start a new
    one (`ExecStartPre=` of the attacker's choosing), a backslash escapes or continues the line,
    spaces at an end are trimmed away. Those are refused; `%` (a specifier) is doubled."""
    found = _UNSAFE_IN_UNIT.search(value)
    if found is not None:
        char = found.group(0)
        name = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\\": "a backslash"}.get(
            char, f"the control character U+{ord(char):04X}")
        raise ScheduleError(f"{what} {value!r} has {name}, which a systemd unit cannot hold: rename it")
    if value != value.strip():
        raise ScheduleError(f"{what} {value!r} starts or ends with a space, which a systemd unit drops: rename it")
    return value.replace("%", "%%")


def _quoted(value: str) -> str:
    """One word in double quotes (systemd.syntax(7)); backslashes are refused before this."""
    return '"' + value.replace('"', '\\"') + '"'


def units(schedule_file: Path, root: Path, every_minutes: int = 5) -> dict[str, str]:
    """A systemd service and timer that run `patchwave schedule run` (which does what is due).
    Paths are quoted and their `%` and `$` escaped as systemd.service(5) says; a path systemd
    could not hold exactly (a line break, a backslash) is refused rather than written."""
    schedule_path = _unit_text(str(schedule_file.resolve()), "the schedule file")
    workdir = _unit_text(str(root), "the Patchwave checkout")
    binary = _unit_text(str(root / ".venv" / "bin" / "patchwave"), "the patchwave program")
    service = (
        "[Unit]\nDescription=Patchwave: run the scheduled jobs that are due\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={workdir}\n"
        f"Environment={_quoted('PATCHWAVE_SCHEDULE=' + schedule_path)}\n"
        "# secrets for notifications (PATCHWAVE_NOTIFY and the variables it names) go in this file\n"
        "EnvironmentFile=-/etc/patchwave/environment\n"
        f"ExecStart={_quoted(binary.replace('$', '$$'))} schedule run\n"  # $ would expand a variable
        "Nice=10\n")
    timer = (
        "[Unit]\nDescription=Patchwave: check the schedule every few minutes\n\n"
        f"[Timer]\nOnBootSec=2min\nOnUnitActiveSec={int(every_minutes)}min\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n")
    return {"patchwave-schedule.service": service, "patchwave-schedule.timer": timer}


def describe(job: Job) -> dict[str, Any]:
    return {"name": job.name, "kind": job.kind, "cadence": job.every or f"cron {job.cron}",
            "groups": job.groups, "device_types": job.device_types}
