"""What a command returns to the CLI: its answer for people, for programs, and its exit code.

A command acts and returns one of these; the CLI alone writes it (lines on stdout, or one
JSON object with --json) and exits with its code, so no command picks how it is shown.
"""

from __future__ import annotations

from typing import Any, Protocol


class Result(Protocol):
    @property
    def exit_code(self) -> int: ...

    def lines(self) -> list[str]:
        """For people: the lines on stdout."""
        ...

    def document(self) -> dict[str, Any]:
        """For programs (--json): one JSON object, as the contract gives it."""
        ...
