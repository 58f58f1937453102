"""Progress on stderr while playbooks run: a live per-host table (rich) on a terminal, plain
lines otherwise (CI logs, pipes). It only shows what the runner reports; the store is the record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from patchwave.ansible.runner import TRACKED_ACTIONS, TaskEvent

_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold red", "done": "green"}


@dataclass
class _Row:
    task: str = "waiting"
    state: str = "pending"
    ok: int = 0
    changed: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None


class Display:
    """Implements the runner's observer: begin(run, hosts), event(TaskEvent), end(run, status)."""

    def __init__(self, console: Console, live: bool | None = None) -> None:
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self._live: Live | None = None
        self._title = ""
        self._rows: dict[str, _Row] = {}

    # --- plain messages ------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.console.print(f"[dim]{escape(message)}[/dim]", highlight=False)

    # --- one runner invocation -----------------------------------------------------------
    def begin(self, run: str, hosts: list[str]) -> None:
        self._title = run
        self._rows = {h: _Row() for h in sorted(hosts)}
        if self.live_mode:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.start()
        else:
            self.say(f"{run}: {len(hosts)} host(s)")

    def event(self, event: TaskEvent) -> None:
        row = self._rows.setdefault(event.host, _Row())
        if event.kind == "start":
            row.task, row.state = event.task, "running"
            return
        if event.kind == "skipped":
            return
        if event.kind in ("ok", "changed"):
            setattr(row, event.kind, getattr(row, event.kind) + 1)
            if row.state != "failed":
                row.state = "running"
        else:
            row.failed += 1
            row.state, row.task = event.kind, f"{event.task}: {event.message}"
            row.finished = time.monotonic()
        if not self.live_mode and (event.kind in ("failed", "unreachable") or event.action in TRACKED_ACTIONS):
            note = f": {event.message}" if event.kind in ("failed", "unreachable") else ""
            self.console.print(f"  {escape(event.host)}: {escape(event.task)} {event.kind.upper() if note else event.kind}"
                               f"{escape(note)}", highlight=False, soft_wrap=True)

    def end(self, run: str, status: str) -> None:
        now = time.monotonic()
        for row in self._rows.values():
            if row.state not in ("failed", "unreachable"):
                row.state, row.task = ("done", "") if status == "successful" or row.ok or row.changed else (status, "")
            row.finished = row.finished or now
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        else:
            counts: dict[str, int] = {}
            for row in self._rows.values():
                counts[row.state] = counts.get(row.state, 0) + 1
            self.say(f"{run}: {status} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})")

    def render(self) -> RenderableType:
        table = Table("host", "task", "state", "ok", "changed", "failed", "time", title=self._title,
                      title_justify="left", expand=False)
        now = time.monotonic()
        for host, row in self._rows.items():
            style = _STYLE.get(row.state, "")
            elapsed = (row.finished or now) - row.started
            table.add_row(host, escape(row.task[:80]), f"[{style}]{row.state}[/{style}]" if style else row.state,
                          str(row.ok), str(row.changed), str(row.failed), f"{elapsed:.0f}s")
        return table


def quiet() -> Display:
    """A display that shows nothing (library use and tests)."""
    return Display(Console(stderr=True, quiet=True), live=False)
