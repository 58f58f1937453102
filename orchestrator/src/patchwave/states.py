"""The states of a cycle, a wave and a host, and the one table of the moves allowed between them.

The cycle writes these, the store refuses a move the tables do not allow, and notify, reporting
and the CLI compare against the same members, so a state written in one place and awaited under
another name in a second (a wave `halted` that nothing ever wrote) cannot happen again.
"""

from __future__ import annotations

from enum import StrEnum


class CycleStatus(StrEnum):
    STARTED = "started"
    APPROVED = "approved"  # the manifest is frozen
    DEPLOYING = "deploying"
    AWAITING_APPROVAL = "awaiting-approval"
    CONFIRMING = "confirming"
    COMPLETED = "completed"
    FAILED = "failed"
    HALTED = "halted"
    ROLLED_BACK = "rolled-back"

    @property
    def final(self) -> bool:
        """The cycle ended: nothing to resume (a rollback may still follow)."""
        return self in FINAL_CYCLE_STATUSES


class WaveStatus(StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting-approval"
    RUNNING = "running"
    SOAKING = "soaking"
    PASSED = "passed"
    FAILED = "failed"  # its gate failed: the rollout stopped here
    SKIPPED = "skipped"  # never started: an earlier gate, a rejection or a closed window stopped it

    @property
    def final(self) -> bool:
        return self in (WaveStatus.PASSED, WaveStatus.FAILED, WaveStatus.SKIPPED)


class HostState(StrEnum):
    """A host's end state in a cycle. The first seven are what the confirm rescan proves (the
    collection's `confirmation.state`); the last two only the orchestrator knows."""

    PATCHED = "patched"
    PATCHED_PENDING_REBOOT = "patched-pending-reboot"
    PATCHED_PENDING_RESTART = "patched-pending-restart"
    PARTIALLY_PATCHED = "partially-patched"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    EXCLUDED = "excluded"
    UNREACHABLE = "unreachable"  # could not be reached
    NOT_REACHED = "not-reached"  # the rollout stopped before its wave


class TicketState(StrEnum):
    """Patchwave's side of a ticket in a ticket system."""

    OPENING = "opening"  # queued to open
    OPEN = "open"
    CONFIRMING = "confirming"  # ops marked it done: a rescan or reassessment of its host decides
    CLOSING = "closing"  # queued to close: the confirming scan or assessment passed
    CLOSED = "closed"


# the tickets a passing rescan or reassessment closes
CLOSABLE_TICKETS = frozenset({TicketState.OPENING, TicketState.OPEN, TicketState.CONFIRMING})


FINAL_CYCLE_STATUSES = frozenset({CycleStatus.COMPLETED, CycleStatus.FAILED, CycleStatus.HALTED,
                                  CycleStatus.ROLLED_BACK})

# Every move a cycle may make. A resume drives an unfinished cycle again from its stored status,
# so the working statuses may be entered again; a rollback may follow any status once a wave ran.
CYCLE_MOVES: dict[CycleStatus, frozenset[CycleStatus]] = {
    CycleStatus.STARTED: frozenset({CycleStatus.APPROVED}),
    CycleStatus.APPROVED: frozenset({CycleStatus.DEPLOYING}),
    CycleStatus.DEPLOYING: frozenset({CycleStatus.DEPLOYING, CycleStatus.AWAITING_APPROVAL, CycleStatus.CONFIRMING,
                                      CycleStatus.ROLLED_BACK, CycleStatus.FAILED}),
    CycleStatus.AWAITING_APPROVAL: frozenset({CycleStatus.DEPLOYING, CycleStatus.ROLLED_BACK, CycleStatus.FAILED}),
    CycleStatus.CONFIRMING: frozenset({CycleStatus.DEPLOYING, CycleStatus.CONFIRMING, CycleStatus.COMPLETED,
                                       CycleStatus.FAILED, CycleStatus.HALTED, CycleStatus.ROLLED_BACK}),
    CycleStatus.COMPLETED: frozenset({CycleStatus.ROLLED_BACK, CycleStatus.FAILED}),
    CycleStatus.FAILED: frozenset({CycleStatus.ROLLED_BACK, CycleStatus.FAILED}),
    CycleStatus.HALTED: frozenset({CycleStatus.ROLLED_BACK, CycleStatus.FAILED}),
    CycleStatus.ROLLED_BACK: frozenset({CycleStatus.ROLLED_BACK, CycleStatus.FAILED}),
}

# Every move a wave may make. `running` again is a resumed wave deployed again (hosts already at
# the manifest's versions are left alone); a finished wave never moves.
WAVE_MOVES: dict[WaveStatus, frozenset[WaveStatus]] = {
    WaveStatus.PENDING: frozenset({WaveStatus.AWAITING_APPROVAL, WaveStatus.RUNNING, WaveStatus.SKIPPED}),
    WaveStatus.AWAITING_APPROVAL: frozenset({WaveStatus.AWAITING_APPROVAL, WaveStatus.RUNNING, WaveStatus.SKIPPED}),
    WaveStatus.RUNNING: frozenset({WaveStatus.RUNNING, WaveStatus.SOAKING, WaveStatus.PASSED, WaveStatus.FAILED}),
    WaveStatus.SOAKING: frozenset({WaveStatus.SOAKING, WaveStatus.PASSED, WaveStatus.FAILED}),
    WaveStatus.PASSED: frozenset(),
    WaveStatus.FAILED: frozenset(),
    WaveStatus.SKIPPED: frozenset(),
}

# the end states in which every approved fix is installed (tickets close, the host counts as
# patched); pending-reboot and pending-restart still have the old code in memory
PATCHED_STATES = frozenset({HostState.PATCHED, HostState.PATCHED_PENDING_REBOOT, HostState.PATCHED_PENDING_RESTART})

# the end states that count against a cycle (exit code 1, reports, repeat offenders): the host
# did not end with its fixes, including a host the rollout never reached
FAILED_STATES = frozenset({HostState.FAILED, HostState.PARTIALLY_PATCHED, HostState.UNREACHABLE,
                           HostState.NOT_REACHED})

# the end states in which the host itself failed, so that its owner has something to do (a
# ticket): not a host the rollout stopped before (the gate's alert is about those)
HOST_FAILED_STATES = frozenset({HostState.FAILED, HostState.PARTIALLY_PATCHED, HostState.UNREACHABLE})

# the statuses of the waves whose hosts were deployed to (the confirm rescan covers them)
DEPLOYED_WAVES = frozenset({WaveStatus.PASSED, WaveStatus.FAILED})

# the statuses of the waves whose hosts a deploy may have changed (a rollback covers them): also
# a wave interrupted while deploying or soaking
TOUCHED_WAVES = DEPLOYED_WAVES | {WaveStatus.RUNNING, WaveStatus.SOAKING}


def cycle_sources(new: CycleStatus) -> frozenset[CycleStatus]:
    """The statuses a cycle may move to `new` from."""
    return frozenset(old for old, moves in CYCLE_MOVES.items() if new in moves)


def wave_sources(new: WaveStatus) -> frozenset[WaveStatus]:
    """The statuses a wave may move to `new` from."""
    return frozenset(old for old, moves in WAVE_MOVES.items() if new in moves)
