"""Slowing down password guessing: how long a client address must wait before its next login attempt.

Jupyter itself never limits failed logins, and scanners find public Jupyter servers
within minutes. A few mistakes cost nothing; from the fifth failure in a row each
further failure doubles the wait (5 s, 10 s, 20 s ... up to 5 minutes), so a guesser
gets about a dozen tries an hour while a user who mistyped waits seconds. A success
clears the address's count; an address quiet for an hour is forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 4  # failures in a row that cost no wait
FIRST_WAIT = 5.0  # seconds, after the first failure beyond the free ones
LONGEST_WAIT = 300.0
FORGET_AFTER = 3600.0  # an address quiet this long starts afresh
MAX_ADDRESSES = 10_000  # beyond this, the longest-quiet addresses are forgotten first


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._addresses: dict[str, _Record] = {}

    def wait(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        record = self._current(address)
        return max(0.0, record.blocked_until - self._clock()) if record else 0.0

    def failed(self, address: str) -> float:
        """Count a failed attempt; the wait it now imposes on that address."""
        now = self._clock()
        record = self._current(address) or _Record()
        record.failures += 1
        record.last_failure = now
        beyond = record.failures - FREE_FAILURES
        if beyond > 0:
            record.blocked_until = now + min(LONGEST_WAIT, FIRST_WAIT * 2 ** (beyond - 1))
        self._addresses[address] = record
        self._prune(now)
        return max(0.0, record.blocked_until - now)

    def succeeded(self, address: str) -> None:
        self._addresses.pop(address, None)

    def _current(self, address: str) -> _Record | None:
        record = self._addresses.get(address)
        if record is not None and self._clock() - record.last_failure > FORGET_AFTER:
            del self._addresses[address]
            return None
        return record

    def _prune(self, now: float) -> None:
        if len(self._addresses) <= MAX_ADDRESSES:
            return
        stale = [a for a, r in self._addresses.items() if now - r.last_failure > FORGET_AFTER]
        for address in stale:
            del self._addresses[address]
        if len(self._addresses) > MAX_ADDRESSES:
            by_age = sorted(self._addresses, key=lambda a: self._addresses[a].last_failure)
            for address in by_age[: len(self._addresses) - MAX_ADDRESSES]:
                del self._addresses[address]
