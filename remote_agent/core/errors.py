"""The contract's exit codes, and one root error whose subclasses each carry one of them.

Only the CLI (and `connect`'s, on the laptop) turns these into exit codes and stderr
lines, so library code raises and never prints or exits.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes users and scripts rely on (README, "Exit codes"); each is defined here only."""

    OK = 0  # for `status`: everything that should run is up
    UNEXPECTED = 1  # a bug
    BAD_INPUT = 2
    NOT_RUNNING = 3
    MISSING_PREREQUISITE = 4
    START_FAILED = 5
    INTERRUPTED = 130


class RemoteAgentError(Exception):
    """An error the user can act on: a message and, optionally, what to do."""

    exit_code: int = ExitCode.UNEXPECTED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        return [self.message] + ([self.hint] if self.hint else [])


class BadInput(RemoteAgentError):
    """A flag, a setting, or a missing password without a terminal."""

    exit_code = ExitCode.BAD_INPUT


class NotRunning(RemoteAgentError):
    """Jupyter or the tunnel is not running or not healthy."""

    exit_code = ExitCode.NOT_RUNNING


class MissingPrerequisite(RemoteAgentError):
    """tmux, Jupyter or the ngrok binary is missing."""

    exit_code = ExitCode.MISSING_PREREQUISITE


class StartFailed(RemoteAgentError):
    """Jupyter did not come up, or ngrok refused."""

    exit_code = ExitCode.START_FAILED
