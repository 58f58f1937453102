"""The progress display: a live per-host table on a terminal, plain lines in logs."""

from __future__ import annotations

import io

from rich.console import Console

from patchwave.ansible.runner import TaskEvent
from patchwave.progress import Display


def _events(display: Display) -> None:
    display.begin("03-deploy-wave1", ["web2", "web1"])
    display.event(TaskEvent("r", "web1", "Install the manifest packages", "patchwave.endpoint.apply_updates", "start"))
    display.event(TaskEvent("r", "web1", "Install the manifest packages", "patchwave.endpoint.apply_updates", "changed"))
    display.event(TaskEvent("r", "web2", "Install the manifest packages", "patchwave.endpoint.apply_updates", "failed",
                            "pw-agent: postinst failed"))
    display.event(TaskEvent("r", "web1", "Some helper task", "ansible.builtin.set_fact", "ok"))


def test_live_table_shows_each_host_with_its_state() -> None:
    out = io.StringIO()
    display = Display(Console(file=out, force_terminal=True, width=160), live=True)
    _events(display)
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(display.render())
    table = console.export_text()
    web1 = next(line for line in table.splitlines() if "web1" in line)
    web2 = next(line for line in table.splitlines() if "web2" in line)
    assert "running" in web1 and " 1 " in web1  # one ok, one changed so far
    assert "failed" in web2 and "postinst failed" in web2
    display.end("03-deploy-wave1", "failed")
    assert "done" in out.getvalue()  # the final table stays on screen


def test_plain_lines_name_failures_and_tracked_results_only() -> None:
    out = io.StringIO()
    display = Display(Console(file=out, width=200), live=False)
    _events(display)
    display.end("03-deploy-wave1", "failed")
    text = out.getvalue()
    assert "web1: Install the manifest packages changed" in text
    assert "web2: Install the manifest packages FAILED: pw-agent: postinst failed" in text
    assert "helper task" not in text
    assert "03-deploy-wave1: failed (1 done, 1 failed)" in text
