# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    """The per-cycle state directory shared by the modules that keep or read a cycle's journal."""

    DOCUMENTATION = r"""
options:
  state_dir:
    description: Where per-cycle directories are kept on the host.
    type: path
    default: /var/lib/patchwave
"""
