"""When a process that died by itself is started again, and when restarting stops.

Modelled on systemd (`Restart=on-failure`, `RestartSec`, `StartLimitBurst` within
`StartLimitIntervalSec`) and supervisord (`startsecs`: a start only counts as good once
the process has stayed up that long). Pure: the caller gives the times, so a table test
needs no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float  # seconds to wait before the restart
    restarts: tuple[float, ...]  # the restart times still inside the window, this one included
    reason: str  # for the log and status


@dataclass(frozen=True)
class RestartPolicy:
    burst: int = 4  # at most this many restarts ...
    interval: float = 300.0  # ... within this many seconds
    delay: float = 1.0  # wait before a restart
    quick_delay: float = 5.0  # wait instead, when the last run was shorter than `startsecs`
    startsecs: float = 10.0

    def decide(self, exit_reason: str, restarts: Sequence[float], started_at: float | None, now: float) -> Decision:
        """Restart a process that died at `now` (it last started at `started_at`), or give up.

        `restarts` are the times of earlier automatic restarts; those older than the
        window no longer count.
        """
        recent = tuple(t for t in restarts if now - t < self.interval)
        if len(recent) >= self.burst:
            minutes = self.interval / 60
            why = f"exited {len(recent) + 1} times within {minutes:.0f} min (last: {exit_reason}); not restarted again"
            return Decision(False, 0.0, recent, why)
        quick = started_at is not None and now - started_at < self.startsecs
        delay = self.quick_delay if quick and recent else self.delay
        why = f"was {exit_reason}; restarting it ({len(recent) + 1} of {self.burst})"
        return Decision(True, delay, (*recent, now + delay), why)
