"""One error type for everything the CLI reports without a traceback."""

from __future__ import annotations

from urllib.parse import urlsplit


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


def shown_url(url: str) -> str:
    """A URL as messages and logs may show it: without a user or password, a query (a feed or
    receiver token) or a fragment. The store's URL keeps its user and host (`store.display_url`)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}" if parts.scheme else parts.path
