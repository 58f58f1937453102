"""One error type for everything the CLI reports without a traceback."""

from __future__ import annotations


class PatchwaveError(Exception):
    """A failure with a message meant for the operator and the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class InputError(PatchwaveError):
    """Bad input (file, option, host name): nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class HostFailure(PatchwaveError):
    """The run finished but at least one host did not end where it should."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


class GateHalt(PatchwaveError):
    """A gate (failure budget, health check, maintenance window) stopped the rollout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=3)
