"""Everything a command prints: human lines on stdout, JSON events, progress and warnings on stderr."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Console:
    def __init__(self, json_mode: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._progress_shown = False
        self.said = 0  # lines and notes so far (not progress): a serve that said nothing else may be replayed

    @property
    def interactive(self) -> bool:
        """In-place progress only for a person at a terminal: --json output is for programs, even through ssh -t."""
        return not self.json_mode and self.err.isatty()

    def line(self, text: str = "") -> None:
        """A line for the human reader (suppressed in JSON mode)."""
        if not self.json_mode:
            self.said += 1
            self._write(self.out, text)

    def event(self, name: str, **fields: Any) -> None:
        """One JSON line of a stream of events (`serve --json`, `connect --json`), in JSON mode only."""
        if self.json_mode:
            from remote_agent.core.times import now_iso  # not at the top: the quick commands print no events

            self.json({"event": name, **fields, "at": now_iso()})

    def json(self, document: dict[str, Any]) -> None:
        """The one writer of JSON on stdout: a command's object, or one event of a stream."""
        self._write(self.out, json.dumps(document))

    def note(self, text: str) -> None:
        """Progress and explanations, on stderr so stdout stays clean for scripts."""
        self.end_progress()
        self.said += 1
        self._write(self.err, text)

    def warn(self, text: str) -> None:
        self.note(f"warning: {text}")

    def progress(self, label: str, started: float) -> None:
        """On a terminal, one line updated in place; elsewhere the label once."""
        if self.interactive:
            self.err.write(f"\r{label} {time.monotonic() - started:4.1f}s")
            self.err.flush()
            self._progress_shown = True
        elif not self._progress_shown:
            self._write(self.err, f"{label} ...")
            self._progress_shown = True

    def end_progress(self) -> None:
        if self._progress_shown and self.interactive:
            self.err.write("\r\033[K")
            self.err.flush()
        self._progress_shown = False

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text + "\n")
        stream.flush()
