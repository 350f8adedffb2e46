"""Slowing down password guessing: how long a client must wait before its next login attempt.

Jupyter itself never limits failed logins, and scanners find public Jupyter servers
within minutes. A few mistakes cost nothing; from the fifth failure in a row each
further failure doubles the wait (5 s, 10 s, 20 s ... up to 5 minutes), so a guesser
gets about a dozen tries an hour while a user who mistyped waits seconds.

- Each client is counted apart (an IPv6 client by its /64, which one host usually
  holds whole), and so are its two kinds of failure: wrong passwords and unknown share
  links. A success clears only its own kind, so a valid link does not wipe out the
  password failures of the same address. A client quiet for an hour is forgotten.
- All failures together have a budget too, for a guesser who rotates addresses: past
  30 failures within a minute every login attempt waits until the rate falls below it.
  Browsers already logged in are not affected: only logins are counted.
- A record that still makes its client wait is never dropped to make room.

`remote-agent password --unlock` clears everything: it touches a file (request_unlock)
that Jupyter's login looks at before each attempt (Unlocks).
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from remote_agent.core.home import Home
from remote_agent.core.store import write_private

FREE_FAILURES = 4  # failures in a row that cost no wait
FIRST_WAIT = 5.0  # seconds, after the first failure beyond the free ones
LONGEST_WAIT = 300.0
FORGET_AFTER = 3600.0  # a client quiet this long starts afresh
MAX_ADDRESSES = 10_000  # beyond this, the longest-quiet clients that no longer wait are forgotten first
GLOBAL_BUDGET = 30  # failures from all clients together ...
GLOBAL_WINDOW = 60.0  # ... within this many seconds; beyond it, every login attempt waits

# The two kinds of failure, counted apart.
PASSWORD = "password"  # noqa: S105 (a kind of failure, not a password)
LINK = "link"


def client_key(address: str) -> str:
    """What one client is counted as: an IPv4 address, or the /64 network of an IPv6 one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a local user's name): counted as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic, global_budget: int | None = GLOBAL_BUDGET) -> None:
        self._clock = clock
        self._addresses: dict[tuple[str, str], _Record] = {}
        self._global_budget = global_budget
        # The times of the latest failures from everyone; only the oldest of a full budget matters.
        self._recent: deque[float] = deque(maxlen=global_budget or 1)

    def wait(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        now = self._clock()
        key = client_key(address)
        own = [r.blocked_until - now for kind in (PASSWORD, LINK) if (r := self._current((kind, key)))]
        return max([0.0, self.global_wait(), *own])

    def global_wait(self) -> float:
        """Seconds until the failures of the last minute fall below the global budget."""
        if not self._global_budget or len(self._recent) < self._global_budget:
            return 0.0
        return max(0.0, self._recent[0] + GLOBAL_WINDOW - self._clock())

    def failed(self, address: str, kind: str = PASSWORD) -> float:
        """Count a failed attempt; the wait it now imposes on that address."""
        now = self._clock()
        key = (kind, client_key(address))
        record = self._current(key) or _Record()
        record.failures += 1
        record.last_failure = now
        beyond = record.failures - FREE_FAILURES
        if beyond > 0:
            record.blocked_until = now + min(LONGEST_WAIT, FIRST_WAIT * 2 ** (beyond - 1))
        self._addresses[key] = record
        if self._global_budget:
            self._recent.append(now)
        self._prune(now)
        return max(0.0, record.blocked_until - now)

    def succeeded(self, address: str, kind: str = PASSWORD) -> None:
        """A success clears that address's failures of the same kind, and only those."""
        self._addresses.pop((kind, client_key(address)), None)

    def clear(self) -> None:
        """Forget every failure (`password --unlock`)."""
        self._addresses.clear()
        self._recent.clear()

    def _current(self, key: tuple[str, str]) -> _Record | None:
        record = self._addresses.get(key)
        if record is not None and self._clock() - record.last_failure > FORGET_AFTER:
            del self._addresses[key]
            return None
        return record

    def _prune(self, now: float) -> None:
        if len(self._addresses) <= MAX_ADDRESSES:
            return
        stale = [k for k, r in self._addresses.items() if now - r.last_failure > FORGET_AFTER]
        for key in stale:
            del self._addresses[key]
        excess = len(self._addresses) - MAX_ADDRESSES
        if excess > 0:
            # Never a record that still blocks: dropping it would free a guesser. The global
            # budget bounds how fast blocking records can be made (30 a minute).
            free = [k for k, r in self._addresses.items() if r.blocked_until <= now]
            free.sort(key=lambda k: self._addresses[k].last_failure)
            for key in free[:excess]:
                del self._addresses[key]


# -- `password --unlock`, seen by a running Jupyter without a restart ------------------------


def request_unlock(home: Path) -> Path:
    """Ask the running Jupyter of this home to clear its login brake (at its next login attempt)."""
    path = Home(home).login_unlock
    write_private(path, f"{time.time_ns()}\n")
    return path


class Unlocks:
    """Notices a new unlock request: the file's identity changes with each one."""

    def __init__(self, home: Path | None) -> None:
        self._path = Home(home).login_unlock if home else None
        self._seen = self._key()

    def _key(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def requested(self) -> bool:
        key = self._key()
        if key == self._seen:
            return False
        self._seen = key
        return key is not None
