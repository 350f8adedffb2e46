"""When to reopen a dropped forward, and when to give up: one small policy, given the time.

autossh's rule: a first connection that fails within its gate time is a configuration
error (a wrong key, forwarding refused), not a network drop, so it is reported and not
retried forever. Here the first forward must work (a probe through it answers) within
`gate_time`; once one has worked, every drop is the network's: the forward is reopened at
once, then after waits that double up to `max_wait`, starting over after a forward that
stayed up `stable_time`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Retry:
    wait: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


@dataclass
class ReconnectPolicy:
    gate_time: float = 30.0
    first_wait: float = 1.0
    max_wait: float = 30.0
    stable_time: float = 60.0
    _opened_at: float | None = field(default=None, init=False)
    _up_since: float | None = field(default=None, init=False)
    _ever_up: bool = field(default=False, init=False)
    _failures: int = field(default=0, init=False)

    @property
    def ever_up(self) -> bool:
        return self._ever_up

    def opened(self, now: float) -> None:
        """A forward was started (first or reopened)."""
        self._opened_at = now
        self._up_since = None

    def came_up(self, now: float) -> None:
        """A probe answered through the forward."""
        self._ever_up = True
        self._up_since = now

    def overdue(self, now: float) -> bool:
        """The forward opened last has not worked within the gate time (for the first: a configuration error)."""
        return self._up_since is None and self._opened_at is not None and now - self._opened_at >= self.gate_time

    def went_down(self, now: float) -> Retry | GiveUp:
        """The forward ended or stopped answering: wait and reopen, or give up."""
        if not self._ever_up:
            return GiveUp("the first forward failed before it ever worked")
        if self._up_since is not None and now - self._up_since >= self.stable_time:
            self._failures = 0
        self._up_since = None
        # The first reopen at once (a browser tab retries its websocket within a second or two),
        # then 1, 2, 4 ... s while the network stays away.
        wait = 0.0 if self._failures == 0 else min(self.max_wait, self.first_wait * 2 ** (self._failures - 1))
        self._failures += 1
        return Retry(wait)
