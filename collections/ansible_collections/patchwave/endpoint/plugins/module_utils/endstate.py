# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The end-state rule: one truthful end state for a host from what is installed now.

It judges versions, not package managers: the confirm rescan (pending_updates with `expect`)
asks the backend what is installed and the cycle's journal whether it was rolled back, then
calls end_state(). The orchestrator keeps the same list of states (one test pins the two)."""

from __future__ import annotations


END_STATES = ("patched", "patched-pending-reboot", "patched-pending-restart", "partially-patched", "failed",
              "rolled-back", "excluded")


def _names(names, most=10):
    shown = ", ".join(names[:most])
    return shown + (" and %d more" % (len(names) - most) if len(names) > most else "")


def end_state(expected, installed, reboot_required, rolled_back=None, stale=None):
    """One truthful end state for a host from what is installed now.

    expected: {name: wanted version}; installed: {name: version}; rolled_back: None, or the
    journal's {'before': {name: version}, 'new': [names]} when the cycle was rolled back;
    stale: the services (or, for processes no service owns, the commands) still running code the
    update replaced. A patched host with such processes and no reboot pending is
    patched-pending-restart: the fix is on disk but not yet in memory.
    Returns (state, detail, packages)."""
    packages = [dict(name=n, wanted=v, installed=installed.get(n)) for n, v in sorted(expected.items())]
    if rolled_back is not None:
        wrong = [n for n, v in sorted(rolled_back.get("before", {}).items()) if installed.get(n) != v]
        wrong += [n for n in sorted(rolled_back.get("new", [])) if n in installed]
        if not wrong:
            return "rolled-back", "every package is back at its version before the cycle", packages
        return "failed", "rollback incomplete: %s" % ", ".join(wrong), packages
    if not expected:
        return "excluded", "no approved updates for this host", packages
    done = [p["name"] for p in packages if p["installed"] == p["wanted"]]
    missing = [p["name"] for p in packages if p["installed"] != p["wanted"]]
    stale = sorted(set(stale or []))
    if not missing:
        if reboot_required:
            detail = "all %d package(s) installed; a reboot is pending" % len(done)
            if stale:
                detail += " (still running replaced code: %s)" % _names(stale)
            return "patched-pending-reboot", detail, packages
        if stale:
            return ("patched-pending-restart", "all %d package(s) installed; still running replaced code: %s"
                    % (len(done), _names(stale)), packages)
        return "patched", "all %d package(s) at the approved version" % len(done), packages
    if done:
        return "partially-patched", "not at the approved version: %s" % ", ".join(missing), packages
    return "failed", "no package at the approved version: %s" % ", ".join(missing), packages
