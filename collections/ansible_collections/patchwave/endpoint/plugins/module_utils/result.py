# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A module's result, collected as main() goes and sent only through success() or fail().

Every module's main() reads the same way: read and plan, report the plan in check mode, apply,
re-read. The result helps keep it that way: what is learnt on the way (changed, the diff,
warnings, evidence) is collected in one place, and whichever way the module leaves — success,
a refusal, a command that failed — it leaves with everything collected so far.

    result = Result(module, changed=False)
    with result.command_errors():          # a CommandError leaves through fail_command()
        before = manager.installed_versions(names)
        result.diff_versions(before, planned)
        if module.check_mode:
            result.success(changed=True)
        ...
    result.success()

Nothing is added that the caller did not put in: a failure before anything was collected
carries only its message (and Ansible adds `changed: false`).
"""

from __future__ import annotations

import contextlib

from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.base import CommandError


def version_lines(versions):
    """Diff text: sorted `name version` lines."""
    return "".join("%s %s\n" % (name, versions[name]) for name in sorted(versions))


class Result(object):
    """The keys a module returns (`values`), and the only ways out: success(), fail(),
    fail_command()."""

    def __init__(self, module, **values):
        self.module = module
        self.values = dict(values)

    def __getitem__(self, key):
        return self.values[key]

    def __setitem__(self, key, value):
        self.values[key] = value

    def __contains__(self, key):
        return key in self.values

    def update(self, **values):
        self.values.update(values)

    def diff_versions(self, before, after):
        """The diff of a change of installed versions ({name: version} before and after)."""
        self.values["diff"] = dict(before=version_lines(before), after=version_lines(after))

    def warn(self, message):
        """A warning for the task's output (AnsibleModule.warn: exit_json takes no `warnings` since 2.19)."""
        self.module.warn(message)

    def success(self, **extra):
        """Leave with what was collected, and `extra` on top."""
        self.module.exit_json(**dict(self.values, **extra))

    def fail(self, msg, **extra):
        """Leave failed with `msg`, what was collected, and `extra` on top."""
        self.module.fail_json(msg=msg, **dict(self.values, **extra))

    def fail_command(self, exc, **extra):
        """Leave failed with a CommandError's evidence (msg, cmd, rc, stdout, stderr); what was
        collected (and `extra`) goes on top, so output of the module's own commands stays."""
        self.module.fail_json(**dict(exc.as_result(), **dict(self.values, **extra)))

    @contextlib.contextmanager
    def command_errors(self):
        """A CommandError raised inside leaves the module through fail_command()."""
        try:
            yield self
        except CommandError as exc:
            self.fail_command(exc)
