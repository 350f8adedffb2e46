"""One root error; each subclass carries the exit code the contract gives it.

Only the CLI turns these into exit codes and stderr lines, so library code raises
and never prints or exits.
"""

from __future__ import annotations


class RemoteAgentError(Exception):
    """An error the user can act on: a message and, optionally, what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        return [self.message] + ([self.hint] if self.hint else [])


class BadInput(RemoteAgentError):
    """A flag, a setting, or a missing password without a terminal."""

    exit_code = 2


class NotRunning(RemoteAgentError):
    """Jupyter or the tunnel is not running or not healthy."""

    exit_code = 3


class MissingPrerequisite(RemoteAgentError):
    """tmux, Jupyter or the ngrok binary is missing."""

    exit_code = 4


class StartFailed(RemoteAgentError):
    """Jupyter did not come up, or ngrok refused."""

    exit_code = 5
