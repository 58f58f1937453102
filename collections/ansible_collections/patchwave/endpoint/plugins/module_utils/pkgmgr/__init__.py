# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which package manager a host runs: the one place a module gets its backend from.

    manager = pkgmgr.for_host(module)   # an AptManager on Debian and Ubuntu

A second backend (dnf) implements base.PackageManager in a module of its own and joins
BACKENDS; no module changes."""

from __future__ import annotations

from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.apt import AptManager

# asked in turn: the first whose present() is true serves the host
BACKENDS = (AptManager,)
# what a Host or Planner made without a module assumes (tests on a directory tree), and what the
# baseline modules use on a host where no backend is present (see for_host)
DEFAULT = AptManager


def for_host(module, required=True):
    """The backend of the host the module runs on. When none is present the module fails,
    naming what it looked for; with required=False (the baseline modules, which also assess
    hosts without a supported package manager) it gets DEFAULT's backend instead, whose
    package facts there are empty and whose commands fail, as they always did."""
    for backend in BACKENDS:
        if backend.present(module):
            return backend(module)
    if not required:
        return DEFAULT(module)
    module.fail_json(msg="no supported package manager on this host: Patchwave knows %s"
                     % "; ".join("%s (%s on the PATH)" % (b.name, " and ".join(b.commands)) for b in BACKENDS))


def default(module=None):
    """DEFAULT's backend, for callers that have no module to ask the host with."""
    return DEFAULT(module)
