"""What ngrok's edge answers visitors of the public URL: its own refusals, told by the `ngrok-error-code` header.

Some refusals come per request while the agent's session stays up: the monthly quotas
(ERR_NGROK_727 requests, 725 bandwidth) answer every request, and a paid traffic-policy
action without credit (ERR_NGROK_4026) answers the requests that run it (every `POST /login`
under NGROK_LOGIN_RATE_LIMIT). The agent's local API shows nothing wrong then, so the keeper
asks the public URL now and then, as a visitor would, and records what ngrok says.

The probe is light: a HEAD of Jupyter's `/api` (a few bytes), with `ngrok-skip-browser-warning`;
with a login rate limit also a bare `POST /login`, which the rule applies to and which Jupyter
refuses for lack of an XSRF token before any password is checked. Every probe counts against
the free plan's 20,000 requests a month: once right after the tunnel opens, then every 15
minutes (about 2,900 a month), and every minute while ngrok refuses, to see it clear soon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import http.client

from collections.abc import Callable
from dataclasses import dataclass

PROBE_EVERY = 900.0
RECHECK_EVERY = 60.0
PROBE_TIMEOUT = 3.0

QUOTA_FIX = "Wait for next month's quota or upgrade the ngrok plan; meanwhile use --tunnel ssh."
# ngrok's codes for a refusal at the edge, what they mean and what to do (ngrok's error pages).
EDGE_REFUSALS: dict[str, tuple[str, str]] = {
    "ERR_NGROK_725": ("the account reached its monthly bandwidth limit", QUOTA_FIX),
    "ERR_NGROK_727": ("the account reached its monthly limit of HTTP requests", QUOTA_FIX),
    "ERR_NGROK_4026": (
        "the account has no credit for a paid traffic-policy action (the login rate limit)",
        "Remove NGROK_LOGIN_RATE_LIMIT (or set it to 0) or add credit to the ngrok account, then run serve again.",
    ),
    "ERR_NGROK_734": ("the account exceeded its requests per minute", "It resets within a minute."),
}
# Codes that are not a refusal of visitors: the agent is reached but Jupyter is not (8012), the
# endpoint is offline (3200: the keeper's health check deals with that), the browser warning (6024).
NOT_REFUSALS = frozenset({"ERR_NGROK_8012", "ERR_NGROK_3200", "ERR_NGROK_6024"})
ASKS_FOR_LOGIN = frozenset({401, 302, 303, 307})


@dataclass(frozen=True)
class EdgeAnswer:
    status: int | None  # the HTTP status; None when nothing answered
    code: str = ""  # ngrok's `ngrok-error-code` header, "" when there is none

    @property
    def refusal(self) -> str | None:
        """ngrok's code when the edge itself refused the visitor, else None.

        The edge's own checks (basic auth asking for a password, OAuth sending to its login)
        answer a probe without credentials: that is protection working, not a refusal.
        """
        if self.status in ASKS_FOR_LOGIN:
            return None
        return self.code if self.code and self.code not in NOT_REFUSALS else None

    @property
    def reaches_agent(self) -> bool:
        """Jupyter's answer, or ngrok's 502 when the agent is up but Jupyter is not."""
        return self.status is not None and self.code in ("", "ERR_NGROK_8012")


def _visit(url: str, timeout: float) -> tuple[http.client.HTTPConnection, dict[str, str]]:
    """A connection to the public URL and the headers a script sends (no browser warning).

    Names under .localhost are loopback by RFC 6761: connect to 127.0.0.1 and send the
    name as the Host header, as a browser does.
    """
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    address = "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return connection_class(address, parts.port, timeout=timeout), {
        "Host": parts.netloc,
        "ngrok-skip-browser-warning": "1",
    }


def ask(url: str, method: str = "HEAD", path: str = "/api", timeout: float = PROBE_TIMEOUT) -> EdgeAnswer:
    """One request to the public URL, as a script visits it (see _visit)."""
    import http.client  # here, not at the top: serve imports the keeper's modules on its warm path

    conn, headers = _visit(url, timeout)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        response.read(0)
        return EdgeAnswer(response.status, response.getheader("ngrok-error-code", "") or "")
    except (OSError, http.client.HTTPException):
        return EdgeAnswer(None)
    finally:
        conn.close()


CLOUD_ENDPOINT_PAGE = "Your new ngrok Cloud Endpoint!"


def holder(url: str, timeout: float = PROBE_TIMEOUT) -> str:
    """Who answers at a URL ngrok says is already online (ERR_NGROK_334), in words for doctor.

    Some new accounts find their dev domain taken by a Cloud Endpoint ngrok created, which
    answers with a placeholder page; anything else is served by an agent.
    """
    import http.client

    conn, headers = _visit(url, timeout)
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        body = response.read(65536).decode("utf-8", "replace")
        code = response.getheader("ngrok-error-code", "") or ""
    except (OSError, http.client.HTTPException) as e:
        return f"unknown: {url} did not answer ({e})"
    finally:
        conn.close()
    if CLOUD_ENDPOINT_PAGE in body:
        return "cloud_endpoint"
    return f"agent: it answers HTTP {response.status}" + (f" with {code}" if code else "")


def describe(code: str) -> str:
    """One line for last_error, serve and the log: the code, what it means and what to do."""
    meaning, fix = EDGE_REFUSALS.get(code, ("see https://ngrok.com/docs/errors/" + code.lower(), ""))
    return f"ngrok's edge refuses visitors of the public URL: {meaning} ({code}). {fix}".strip()


Asker = Callable[[str, str, str], EdgeAnswer]


def _ask(url: str, method: str, path: str) -> EdgeAnswer:
    return ask(url, method, path)


class EdgeWatch:
    """When to probe the public URL, and what ngrok refuses there now (the keeper records it)."""

    def __init__(self, clock: Callable[[], float], login_rate: int = 0, asker: Asker = _ask) -> None:
        self.clock = clock
        self.asker = asker
        self.requests = [("HEAD", "/api")] + ([("POST", "/login")] if login_rate > 0 else [])
        self.next_at: float | None = None
        self.refused: str | None = None

    def opened(self) -> None:
        """A (re)opened tunnel: look at once."""
        self.next_at = self.clock()

    def due(self) -> bool:
        return self.next_at is not None and self.clock() >= self.next_at

    def probe(self, url: str) -> tuple[bool, str | None]:
        """(the edge answered, ngrok's refusal or None); schedules the next probe."""
        answered, refusal = False, None
        for method, path in self.requests:
            answer = self.asker(url, method, path)
            answered = answered or answer.status is not None
            refusal = refusal or answer.refusal
        self.next_at = self.clock() + (RECHECK_EVERY if refusal else PROBE_EVERY)
        return answered, refusal
