# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-cycle journal on the host: what a patch cycle changes, kept where a rollback finds
it after a reboot or a lost connection.

stage_updates writes it, rollback_updates reads it and marks it rolled back, and the confirm
rescan (pending_updates with `expect`) reads whether the cycle was rolled back. It lives at
STATE_DIR/cycles/CYCLE_ID/journal.json, beside the cycle's rollback material::

    {"cycle_id": "2026-11-29-001",
     "updated": "2026-11-29T10:00:00Z",
     "packages": {"pw-libssl": {"before": "1.0-1", "file": ".../rollback/pw-libssl_1.0-1_all.deb",
                                "method": "cache"}},     # the version before and how to get it back
     "new": ["pw-tools-common"],                           # packages the cycle newly installs
     "requested": {"pw-libssl": "1.0-2"},                  # every name=version ever staged
     "rolled_back": "2026-11-29T11:00:00Z"}                # only once a rollback completed

It is JSON (sorted keys, indented), rewritten whole through a temporary file and a rename, so
a crash leaves either the old journal or the new one."""

from __future__ import annotations

import json
import os
import tempfile
import time

NAME = "journal.json"


def cycle_dir(state_dir, cycle_id):
    """The per-cycle directory on the host (journal and rollback material)."""
    return os.path.join(state_dir, "cycles", cycle_id)


def path(state_dir, cycle_id):
    return os.path.join(cycle_dir(state_dir, cycle_id), NAME)


def read(journal_path):
    """The journal at `journal_path`; {} when the cycle has none on this host yet."""
    if not os.path.exists(journal_path):
        return {}
    with open(journal_path) as handle:
        return json.load(handle)


def write(journal_path, journal):
    """Replace the journal atomically, creating the cycle's directory (0700) when needed."""
    directory = os.path.dirname(journal_path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".journal-")
    with os.fdopen(fd, "w") as handle:
        json.dump(journal, handle, indent=2, sort_keys=True)
    os.rename(tmp, journal_path)


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def saved(journal):
    """{name: {'before', 'file', 'method'}} of the packages whose rollback material is kept."""
    return journal.get("packages", {})


def new_packages(journal):
    """The packages the cycle newly installs (a rollback removes them again)."""
    return journal.get("new", [])


def record_stage(journal, cycle_id, packages, new, wanted):
    """What staging `wanted` ({name: version}) leaves in the journal: the rollback material of
    `packages`, the `new` packages, and `wanted` added to what was requested before."""
    journal.update(cycle_id=cycle_id, updated=_now(), packages=packages, new=new,
                   requested=dict(journal.get("requested", {}), **wanted))
    return journal


def mark_rolled_back(journal, journal_path):
    """Record that every package is back at its version from before the cycle."""
    journal["rolled_back"] = _now()
    write(journal_path, journal)


def rollback_record(state_dir, cycle_id):
    """The journal's {'before': {name: version}, 'new': [names]} when this cycle was rolled back
    on the host (end_state's `rolled_back`), else None."""
    journal = read(path(state_dir, cycle_id))
    if not journal.get("rolled_back"):
        return None
    before = dict((n, e["before"]) for n, e in saved(journal).items())
    return {"before": before, "new": new_packages(journal)}
