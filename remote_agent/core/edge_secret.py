"""The proof that a request came through this session's ngrok tunnel: a random header value.

Jupyter listens on loopback, where any local process can send it any header, so a
forwarded-for address proves nothing by itself. The keeper makes a random secret when it
starts, and the endpoint's traffic policy has ngrok's edge add it to every request
(edge_policy.py; the `add-headers` action costs nothing on any plan). Jupyter's login
believes the visitor address ngrok forwards only on a request that carries it
(login_client.py). The secret lives only in this 0600 file, in the agent's memory and in
Jupyter's: never on a command line, in a log or in a kernel's environment. No keeper (ssh
mode, `stop`), no file: then no forwarded address is believed at all.

ngrok's `add-headers` appends to a header the visitor already sent rather than replacing
it (https://ngrok.com/docs/traffic-policy/actions/add-headers/), and removing the
visitor's copy first (`remove-headers`) is a paid action; so the edge's value is the
last one, which is the one checked.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from pathlib import Path

from remote_agent.core.home import Home
from remote_agent.core.store import write_private

HEADER = "X-Remote-Agent-Edge"


def path(home: Path) -> Path:
    return Home(home).edge_secret


def create(home: Path) -> str:
    """A new secret for a keeper that starts; the previous one stops proving anything."""
    value = secrets.token_urlsafe(32)
    write_private(path(home), value + "\n")
    return value


def remove(home: Path, value: str) -> None:
    """Remove the file if it still holds `value` (a keeper that ends after its successor started leaves it)."""
    with contextlib.suppress(OSError):
        if path(home).read_text(encoding="utf-8").strip() == value:
            path(home).unlink()


def discard(home: Path) -> None:
    """No tunnel any more (stop, ssh mode): whatever secret is left proves nothing from now on."""
    with contextlib.suppress(OSError):
        path(home).unlink()


class EdgeSecret:
    """Jupyter's view of the secret, read again whenever the keeper replaces the file."""

    def __init__(self, home: Path | None) -> None:
        self._path = path(home) if home else None
        self._seen: tuple[int, int, int] | None = None
        self._value: bytes | None = None

    def _current(self) -> bytes | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            self._seen, self._value = None, None
            return None
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        if key != self._seen:
            try:
                text = self._path.read_text(encoding="utf-8").strip()
            except OSError:
                return None
            self._seen, self._value = key, text.encode() if text else None
        return self._value

    def proves(self, values: list[str]) -> bool:
        """True when the last value of the header is the secret (compared in constant time)."""
        secret = self._current()
        if secret is None or not values:
            return False
        return hmac.compare_digest(values[-1].strip().encode(), secret)
