# -*- coding: utf-8 -*-
# Copyright: Patchwave contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluate a compiled baseline (a flat list of rules, parameters already filled in) on this
host: applicability, one check per rule under its own timeout, exceptions, evidence, duration."""

from __future__ import annotations

import re
import signal
import time
from datetime import date, datetime

from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.checks import (
    CHECKS, CheckError, Host, truncate)

STATUSES = ("pass", "fail", "error", "not_applicable", "excepted")


DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


class RuleTimeout(Exception):
    pass


def parse_day(value):
    """A date written YYYY-MM-DD and nothing else (date.fromisoformat() also takes 20260101
    and 2026-W01-1 on Python 3.11, and a text comparison takes anything), or a date; else
    ValueError."""
    if isinstance(value, datetime):
        raise ValueError("%s is a date and time, not a date YYYY-MM-DD" % value.isoformat())
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not DAY.match(value):
        raise ValueError("%r is not a date YYYY-MM-DD" % (value,))
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError("%r is not a date YYYY-MM-DD (no such day)" % (value,))


def exception_in_force(expires, today):
    """An exception that expires on day D is in force through D and lapses on D+1 (dates,
    not texts, are compared). ValueError when either is not a date YYYY-MM-DD."""
    return parse_day(today) <= parse_day(expires)


def os_release(host):
    values = {}
    for line in host.lines("/etc/os-release") or host.lines("/usr/lib/os-release") or []:
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return {"distribution": values.get("ID", ""), "version": values.get("VERSION_ID", "").split(".")[0]}


def applicable(rule, facts, device_type):
    """'' when the rule applies here, else why not."""
    applies = rule.get("applies") or {}
    if applies.get("distributions") and facts["distribution"] not in applies["distributions"]:
        return "applies to %s, not %s" % (", ".join(applies["distributions"]), facts["distribution"] or "?")
    if applies.get("versions") and facts["version"] not in [str(v) for v in applies["versions"]]:
        return "applies to version %s, not %s" % (", ".join(str(v) for v in applies["versions"]), facts["version"])
    if applies.get("device_types") and device_type not in applies["device_types"]:
        return "applies to device type %s, not %s" % (", ".join(applies["device_types"]), device_type or "(none)")
    return ""


def _alarm(_signum, _frame):
    raise RuleTimeout()


def evaluate(rule, host, timeout):
    """One rule → (status, evidence). A rule that runs past `timeout` seconds is an error."""
    check = CHECKS.get(rule["type"])
    if check is None:
        return "error", {"error": "unknown check type %r" % rule["type"]}
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = check(host, rule.get("args") or {}, max(1, int(timeout) - 1))
    except RuleTimeout:
        return "error", {"error": "the check did not finish within %s s" % timeout}
    except CheckError as exc:
        return "error", {"error": truncate(str(exc))}
    except (IOError, OSError, KeyError, ValueError, TypeError) as exc:
        return "error", {"error": truncate("%s: %s" % (type(exc).__name__, exc))}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    evidence = {"expected": truncate(result.expected), "observed": truncate(result.observed),
                "where": truncate(result.where, 300)}
    return result.status, evidence


def assess(rules, device_type="", default_timeout=10, today=None, host=None):
    """Evaluate every rule; returns (results, summary)."""
    host = host or Host()
    facts = os_release(host)
    today = parse_day(today) if today else date.today()
    results = []
    counts = dict((s, 0) for s in STATUSES)
    for rule in rules:
        started = time.monotonic()
        why_not = applicable(rule, facts, device_type)
        if why_not:
            status, evidence = "not_applicable", {"reason": why_not}
        else:
            status, evidence = evaluate(rule, host, rule.get("timeout") or default_timeout)
        exception = rule.get("exception")
        result = {"id": rule["id"], "status": status, "evidence": evidence,
                  "duration": round(time.monotonic() - started, 4)}
        if exception and status == "fail":
            try:
                in_force = exception_in_force(exception.get("expires"), today)
            except ValueError as exc:
                in_force = None
                evidence["note"] = "exception %s does not count: %s" % (exception.get("id"), exc)
            if in_force:
                result["status"] = "excepted"
                result["exception"] = exception.get("id")
            else:
                result["exception_expired"] = exception.get("id")
                if in_force is not None:
                    evidence["note"] = "exception %s expired on %s" % (exception.get("id"), exception.get("expires"))
        counts[result["status"]] += 1
        results.append(result)
    summary = dict(counts)
    summary["total"] = len(results)
    summary["facts"] = facts
    return results, summary
