"""The patchwave command line: one module per command group, each only parsing and presenting.
Machine output (--json) goes to stdout, everything else to stderr."""

from __future__ import annotations

import sys

from rich.markup import escape

from patchwave.cli.common import app, err

# the command modules register their commands on the apps of `common` as they are imported, and
# `--help` lists them in that order: the daily commands first
# isort: off
from patchwave.cli import cycle, baseline, report, demo, fleet, agent, lab, notify  # noqa: F401
# isort: on
from patchwave.errors import PatchwaveError

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except PatchwaveError as exc:
        # the message may quote user input: escape it so that rich never reads it as markup
        err.print(f"[bold red]error:[/bold red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
