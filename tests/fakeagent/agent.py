"""A fake ngrok v3 agent that pyngrok 9.1 drives exactly as it drives the real one.

Run as ``python agent.py ARGS`` (the test helper in ``__init__.py`` writes an executable
``ngrok`` wrapper around it). Nothing here touches the network beyond 127.0.0.1.

Supported command lines
-----------------------
``--version`` / ``version``
    prints ``ngrok version V``: ``control.json`` ``version``, else the current ``LATEST_VERSION``.
``start --none --log stdout [--config PATH[,PATH]] [--authtoken TOKEN] [--region R]``
    the argv pyngrok builds (``--log stderr|false|FILE``, ``--log-format logfmt|json`` and
    ``--flag=value`` spellings are accepted too). Named tunnels and ``--all`` are not.
``config add-authtoken TOKEN [--config PATH]`` / ``config add-api-key KEY`` / ``config check``
    what ``pyngrok.ngrok.set_auth_token`` and friends run; they edit the YAML file.
``update``
    what pyngrok's ``ngrok.update`` runs: sets the version in ``control.json`` to
    ``LATEST_VERSION`` (every wrapper of this control dir is "updated"), or says there is none.

Configuration: a v3 file (``version: "3"`` and an ``agent:`` block with ``authtoken``,
``web_addr``, ``region``, ``log_format``) or a v2 file (the same keys at top level).
Token precedence: ``--authtoken`` > ``$NGROK_AUTHTOKEN`` > the file. ``web_addr`` defaults to
``127.0.0.1:4040``; when that port is busy the next ones (4041, 4042, ...) are tried. Only
IPv4 loopback addresses are bound; any other ``web_addr`` is a startup error.

Control directory
-----------------
``$FAKE_NGROK_DIR`` (the wrapper sets it), else ``$TMPDIR/fake-ngrok-UID``. It holds:

``control.json``
    fault injection, re-read every 100 ms (a missing or half-written file counts as ``{}``):
    ``hang`` (true: the local API and all forwarding stop answering; connections are accepted
    and held; it takes effect from the first poll after startup, so set it on a running
    agent), ``outage`` (``{"id": str, "seconds": float}``: a lost link to the ngrok cloud,
    see below), ``startup_error`` and ``endpoint_error`` (an error code such as
    ``"ERR_NGROK_108"`` or ``"108"``; the first fails startup, the second fails every
    ``POST /api/endpoints``); ``silent`` (true: an agent started from then on prints nothing
    and opens no API until it is stopped, as an agent stuck at start-up; read once at start).
    Today's ngrok (the section "ngrok as it is now (2025-2026)" of the project's notes on
    ngrok; each switch below names its line there). Defaults are today's behaviour:
    ``version`` (default ``LATEST_VERSION``; below 3.30.0 there is no ``/api/endpoints``),
    ``min_agent_version`` (the account's minimum: an older agent fails with ERR_NGROK_121),
    ``dev_domain`` (default true: an endpoint without a URL gets the account's one dev domain;
    false gives the old random ``<8 hex>.ngrok.localhost`` names), ``agent_limit`` (default 3
    agent sessions per token, then ERR_NGROK_108), ``stale_session_seconds`` (default 0: how
    long the edge keeps a SIGKILLed agent's session and URLs, answering ERR_NGROK_334 to a
    replacement; a clean stop releases them at once), ``credit`` (default false: a paid
    ``rate-limit`` action is refused with ERR_NGROK_4026), ``api_log`` (default true: every
    local API call is logged at info), ``browser_warning`` (default true: the warning page),
    ``record_api_calls`` (default false: each local API call is also an ``api_call`` event).
    What ngrok says at the edge (facts.md "Refusals at the edge, per request", "A Cloud Endpoint
    on a new account's dev domain", "Permanent refusals", "Per-connection log lines"):
    ``edge_refusal`` (a code such as ``"ERR_NGROK_727"``: every HTTP request on every endpoint is
    answered by the edge with ngrok's error page and ``ngrok-error-code``, while the session stays
    up), ``credit_refused_at`` (``"creation"``, the default: a paid action without credit fails
    the endpoint with ERR_NGROK_4026; ``"request"``: the endpoint opens and each request the
    rate-limit rule applies to gets the 4026 page), ``custom_domains`` (default true; false: a
    free plan, a URL other than the dev domain fails with ERR_NGROK_313), ``join_log`` (default
    true: a ``join connections`` line per proxied connection), ``cloud_endpoints`` (set by
    ``FakeNgrok.start_cloud_endpoint``: domains a Cloud Endpoint holds, ERR_NGROK_334 for agents,
    its placeholder page for visitors) and ``offline_edge`` (default: a killed or stopped
    agent's URL answers 404 with ERR_NGROK_3200, as ngrok does, from a thread of the test's
    ``FakeNgrok``; false, set by ``FakeNgrok.refuse_offline_urls``: the port refuses connections).
``events.jsonl``
    one JSON object per line, appended by every agent: ``{"event", "pid", "at", ...}`` with
    event ``started`` (``url`` = local API URL), ``startup_failed`` (``error_code``),
    ``endpoint_created`` / ``endpoint_deleted`` (``name``, ``url``), ``outage_started`` /
    ``outage_ended`` (``id``, ``urls`` of the endpoints), ``exited`` (``code``, ``reason``).
``agents/PID.json``
    one record per agent (pid, /proc start time, state, a hash of the token, held domains):
    the basis of the one-session-per-authtoken rule (ERR_NGROK_108) and of domain ownership
    (ERR_NGROK_334). Liveness is checked in /proc; zombies and reused pids count as dead.
``domains.json``
    the local port of each reserved domain, so the domain keeps its URL across restarts.
``outages/``
    when each outage id was first seen: an outage is one shared window of wall-clock time.

Authentication (simulated)
--------------------------
No token -> ERR_NGROK_4018; a token starting with ``bad`` -> ERR_NGROK_105, with ``revoked`` ->
ERR_NGROK_107 (both messages quote the token, as ngrok's do); another live agent of the same
control dir with the same token -> ERR_NGROK_108. Any other token is accepted.

Log lines (logfmt on the ``--log`` target; values quoted so ``shlex`` reads them back)
------------------------------------------------------------------------------------
Startup: ``msg="no configuration paths supplied"`` and ``msg="using configuration at default
config path" path=P`` (without ``--config``), ``msg="open config file" path=P err=nil``,
``msg="starting web service" obj=web addr=127.0.0.1:PORT allow_hosts=[]`` (the API answers
already), ``msg="client session established" obj=tunnels.session``, ``msg="tunnel session
started" obj=tunnels.session``. Failed session: ``lvl=eror`` ``msg="failed to reconnect
session" obj=tunnels.session``, ``msg="session closing" obj=tunnels.session``,
``msg="terminating with error" obj=app``, then ``lvl=crit msg="command failed"``, each with
``err="<message>\\r\\n\\r\\nERR_NGROK_NNN"``, plus ``ERROR:  `` lines on stderr; exit 1. Bad
configuration or flags: ``lvl=crit msg="command failed" err=...``. Endpoints: ``msg="started
tunnel" obj=tunnels name=N addr=UPSTREAM url=PUBLIC``, ``msg="stopped tunnel" obj=tunnels
name=N url=PUBLIC``, ``lvl=warn msg="failed to open private leg" obj=tunnels.session id=ID
privaddr=H:P err=...`` (upstream down), ``msg="join connections" obj=join id=ID l=UPSTREAM
r=CLIENT_IP:PORT`` (each proxied connection). Outage: ``lvl=eror msg="session closed, starting
reconnect loop"``, ``lvl=eror msg="failed to reconnect session" obj=tunnels.session err=...``
at each retry (0.5 s, then doubling up to 30 s), ``lvl=info msg="client session established"``
at the first retry after the outage. Stop: ``msg="received stop
request" obj=app stopReq="{err:<nil> restart:false}"``, ``msg="session closing"
obj=tunnels.session err=nil``.

Local API (JSON, like ngrok's agent API)
----------------------------------------
``GET /api/endpoints`` -> ``{"endpoints": [ENDPOINT...], "uri": "/api/endpoints"}``;
``POST /api/endpoints`` with ``{"name", "upstream": {"url"}, "url"?, "traffic_policy"?,
"pooling_enabled"?, "inspect"?}`` -> 201 ENDPOINT; ``GET``/``DELETE /api/endpoints/NAME`` ->
200 / 204, or 404. ENDPOINT is ``{"id", "name", "uri", "url", "upstream": {"url",
"protocol": "http1"}, "traffic_policy", "pooling_enabled", "inspect", "metrics"}``.
``/api/tunnels`` (GET, POST with ``addr``/``proto``, GET/DELETE by name) gives the older shape
``{"name", "ID", "uri", "public_url", "proto", "config": {"addr", "inspect"}, "metrics"}``.
``GET /api/status`` -> ``{"status": "online"|"reconnecting", "agent_version", "session": {"legs":
[{"region", "latency": "12.345678ms"}]}, "uri"}``. Every call is logged at info (``msg=start
pg=/api/...``, ``msg=end ... status=200``) unless ``api_log`` is false.
``GET /api/requests/http`` -> an always empty ``{"requests": []}``.
Errors: ``{"error_code", "status_code", "msg", "details": {"err"}}``; a duplicate name, a bad
upstream or traffic policy give 400 with error_code 102; a domain held by another live agent,
or a forced ``endpoint_error``, give 400 with error_code 103 and ``details.err`` ending with
the ngrok code (``ERR_NGROK_334``...).

Forwarding
----------
Each endpoint listens on 127.0.0.1: for a domain (the token's dev domain
``word-word-word.ngrok-free.dev.localhost`` when no ``url`` is given, or a reserved one, ``url``
``https://NAME.ngrok.localhost`` or bare ``NAME.ngrok.localhost``) the port remembered for that
domain, else an OS-chosen port. Public URLs are ``http://DOMAIN:PORT``, or
``http://<8 hex>.ngrok.localhost:PORT`` with ``dev_domain`` off (``tcp://0.tcp.ngrok.localhost:PORT``
for ``url: "tcp://"``). While an agent is cut off (``outage``) its HTTP endpoints answer 404
with ``ngrok-error-code: ERR_NGROK_3200``; browsers (any browser User-Agent) get the warning page
first (``browser_warning``), with ``ngrok-error-code: ERR_NGROK_6024``, until its button sets the
cookie ``abuse_interstitial=<host>``. Bytes are
copied both ways until both sides have closed (half-closes are passed on), so keep-alive and
websockets work and the client's Host header reaches the upstream unchanged.

Deliberate simplifications:

* no TLS anywhere: an ``https://`` URL is served as ``http://``; upstream schemes are ignored
  and the upstream must be a loopback address or ``localhost`` (mapped to 127.0.0.1);
* every request of a connection (keep-alive ones too, up to a websocket upgrade) reaches the
  upstream with the client's address appended to ``X-Forwarded-For`` and its scheme (``http``
  here) to ``X-Forwarded-Proto``, as ngrok does (facts.md "Forwarded headers": use the last
  value); the client's own ``X-Real-Ip``/``X-Scheme`` pass unchanged; the traffic-policy
  actions ``remove-headers`` then ``add-headers`` of ``on_http_request`` are applied to each
  of them in policy order (``add-headers`` appends, it never replaces; see HEADER ACTIONS);
* HTTP endpoints read the first request head (up to 64 KiB) before dialling the upstream;
  traffic policy looks only at that first request of each connection, later keep-alive
  requests pass unchecked; an unreachable upstream gives ``502 Bad Gateway`` with
  ``ERR_NGROK_8012`` in the body and the ``ngrok-error-code`` header;
* traffic policy: phases ``on_http_request`` (alias ``inbound``), ``on_http_response``
  (``outbound``), ``on_tcp_connect``; rule ``expressions`` are ignored (every rule matches),
  except ``req.method == '...'`` and ``req.url.path == '...'`` (joined by ``&&``) in deciding
  which requests a rate-limit rule without credit refuses;
  action ``basic-auth`` (``config.credentials``: ``"user:password"`` with a password of 8 to 128
  characters and no ``${``, as ngrok requires) answers 401 with ``WWW-Authenticate: Basic realm="ngrok"``;
  ``add-headers`` (``config.headers``: 1 to 10 names to values; ``${conn.client_ip}`` is the
  only expression) and ``remove-headers`` (``config.headers``: 1 to 10 names; a paid action,
  refused with ERR_NGROK_4026 unless ``credit`` is on) change each request (above);
  ``oauth`` (``config.provider``) answers every request with a 302 to
  ``https://idp.ngrok.com/oauth2/PROVIDER/authorize?...``; ``rate-limit`` is refused with
  ERR_NGROK_4026 unless ``credit`` is on, then accepted and ignored; any other action type is
  refused with 400 so a test never silently relies on it;
  the legacy ``basic_auth: ["user:password"]`` option works as a basic-auth action;
* ``pooling_enabled`` is recorded but does not pool: a second agent still gets ERR_NGROK_334;
  ``inspect`` is recorded (default false) but there is no traffic inspector;
* a reserved domain's remembered port taken by some other program makes the POST fail
  (400) rather than silently change the URL;
* an outage (``control.json`` ``outage``) lasts from the moment the first agent sees its id
  for ``seconds``: live agents log ``failed to reconnect session`` every 0.5 s, reset every
  public connection (the listening ports stay bound, so URLs survive) and then log
  ``client session established`` again; an agent started during the window waits for its
  end before it reports its session;
* a hung agent (``hang``) still logs; SIGSTOP is the way to freeze it entirely;
* a stopped (SIGSTOP) agent still holds its token and domains, as a real session would until
  the ngrok cloud times it out;
* when the reader of stdout goes away, the next log line kills the agent with SIGPIPE, as it
  kills the Go binary; while nobody reads stdout, logging blocks once the pipe is full, as
  with the real agent.

SIGTERM/SIGINT close the listeners, log ``received stop request`` and exit 0. The agent
never starts child processes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO, cast
from urllib.parse import quote, unquote, urlsplit

import yaml

# Sources: the section "ngrok as it is now (2025-2026)" of notes/facts.md, cited as
# facts.md "<its bullet>" beside each behaviour that follows today's ngrok.
LATEST_VERSION = "3.36.0"
ENDPOINTS_API_SINCE = (3, 30, 0)  # facts.md "Agent versions": /api/endpoints exists from 3.30.0
DEFAULT_AGENT_LIMIT = 3  # facts.md "One dev domain, several agents": the free plan allows 3 agents
DEV_DOMAIN_SUFFIX = "ngrok-free.dev.localhost"  # facts.md "Dev domains", under .localhost for tests
HEARTBEAT_SECONDS = 0.5
# facts.md "The browser warning (ERR_NGROK_6024)": the cookie `abuse_interstitial=<host>`, and the
# page carries the code in `ngrok-error-code` (ngrok's error page https://ngrok.com/docs/errors/err_ngrok_6024).
WARNING_COOKIE = "abuse_interstitial"
WARNING_CODE = "ERR_NGROK_6024"
WARNING_PATH = "/__ngrok_visit"
WARNING_BUTTON = "Visit Site"  # facts.md "Free plan limits": the button has read "Visit Site"
CONTROL_DIR_ENV = "FAKE_NGROK_DIR"
CONTROL_FILE = "control.json"
EVENTS_FILE = "events.jsonl"
AGENTS_DIR = "agents"
DOMAINS_FILE = "domains.json"
OUTAGES_DIR = "outages"
LOCK_FILE = "lock"

DEFAULT_WEB_ADDR = "127.0.0.1:4040"
WEB_PORT_TRIES = 100
CONTROL_POLL_SECONDS = 0.1
# facts.md "Log lines": while its session is lost the agent retries with a backoff from 500 ms to 30 s.
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 30.0
DIAL_TIMEOUT_SECONDS = 5.0
RANDOM_DOMAIN_SUFFIX = "ngrok.localhost"
OFFLINE_EDGE_HANDOVER_SECONDS = 3.0

_DASHBOARD_TOKEN = "https://dashboard.ngrok.com/get-started/your-authtoken"
# Texts follow what the real service sends; {token} and {url} are filled in.
ERROR_MESSAGES: dict[str, str] = {
    "ERR_NGROK_105": (
        "authentication failed: The authtoken you specified does not look like a proper ngrok "
        "tunnel authtoken.\nYour authtoken: {token}\nInstructions to install your authtoken are "
        f"on your ngrok dashboard:\n{_DASHBOARD_TOKEN}"
    ),
    "ERR_NGROK_107": (
        "authentication failed: The authtoken you specified is properly formed, but it is invalid.\n"
        "Your authtoken: {token}\nThis usually happens when:\n    - You reset your authtoken\n"
        "    - Your authtoken was for a team account that you were removed from\n"
        "    - You are using ngrok link and this credential was explicitly revoked\n"
        "Go to your ngrok dashboard and double check that your authtoken is correct:\n"
        f"{_DASHBOARD_TOKEN}"
    ),
    # facts.md "One dev domain, several agents": 3 agent sessions on the free plan.
    "ERR_NGROK_108": (
        "authentication failed: Your account is limited to {limit} simultaneous ngrok agent sessions.\n"
        "Run multiple endpoints at the same time from a single agent by defining them in your agent "
        "configuration file and running `ngrok start --all`.\n"
        "You can view your current agent sessions in the dashboard: https://dashboard.ngrok.com/agents"
    ),
    "ERR_NGROK_120": (
        'authentication failed: Your ngrok-agent version "{version}" is no longer supported. Only the '
        "most recent version of the ngrok agent is supported without an account."
    ),
    # facts.md "Agent versions": 121 is an agent too old for the account.
    "ERR_NGROK_121": (
        'authentication failed: Your ngrok-agent version "{version}" is too old. The minimum supported '
        'agent version for your account is "{min_version}". Update to a newer version with '
        "'ngrok update', by downloading from https://ngrok.com/download, or by updating your SDK version."
    ),
    # ngrok's error pages https://ngrok.com/docs/errors/err_ngrok_725 and .../err_ngrok_727; facts.md
    # "Refusals at the edge, per request": the same codes also answer visitors while the session is up.
    "ERR_NGROK_725": (
        "authentication failed: This ngrok account has reached its bandwidth limit for the month. "
        "Log into https://dashboard.ngrok.com/billing to view your options."
    ),
    "ERR_NGROK_727": (
        "authentication failed: This ngrok account has reached its HTTP requests limit for the month. "
        "Log into https://dashboard.ngrok.com/billing to view your options."
    ),
    "ERR_NGROK_734": (
        "You have exceeded your limit of 4000 requests per minute. This limit will reset within 1 minute."
    ),
    "ERR_NGROK_4018": (
        "authentication failed: Usage of ngrok requires a verified account and authtoken.\n\n"
        "Sign up for an account: https://dashboard.ngrok.com/signup\n"
        f"Install your authtoken: {_DASHBOARD_TOKEN}"
    ),
    # facts.md "One dev domain, several agents": the message suggests pooling.
    "ERR_NGROK_334": (
        "failed to start tunnel: The endpoint '{url}' is already online. Either\n"
        "1. stop your existing endpoint first, or\n"
        "2. start both endpoints with `--pooling-enabled` to load balance between them."
    ),
    "ERR_NGROK_3200": "failed to start tunnel: The endpoint '{url}' is offline.",
    # facts.md "Permanent refusals"; ngrok's error list (https://ngrok.com/docs/errors/err_ngrok_313).
    "ERR_NGROK_313": (
        "failed to start tunnel: Only paid plans may bind custom subdomains.\n"
        "Failed to bind the custom subdomain '{url}' for the account 'fake account'.\n"
        "This account is on the 'Free' plan.\n\n"
        "Upgrade to a paid plan at: https://dashboard.ngrok.com/billing/subscription"
    ),
    # facts.md "Permanent refusals" (domain registration); reported by agents in 2025-2026.
    "ERR_NGROK_15002": "failed to start tunnel: The domain could not be registered for this account.",
    "ERR_NGROK_15013": "failed to start tunnel: Your account is requesting a dev domain that does not exist.",
    # facts.md "Traffic policy costs": rate-limit without credit.
    "ERR_NGROK_4026": (
        "{prefix}Your account has run out of credit, please upgrade to continue using "
        "paid actions, or use your dev domain and remove all paid traffic policy from it."
    ),
}


def normalize_error_code(value: object) -> str | None:
    """``"108"``, ``108`` or ``"err_ngrok_108"`` -> ``"ERR_NGROK_108"``; None when no digits."""
    match = re.search(r"\d+", str(value)) if value not in (None, "", False) else None
    return f"ERR_NGROK_{match.group(0)}" if match else None


def error_message(code: str, *, token: str = "", url: str = "", context: str = "authentication", **more: str) -> str:
    """The text the ngrok service sends for ``code``, ending with ``\\r\\n\\r\\nCODE`` as ngrok's does."""
    template = ERROR_MESSAGES.get(code)
    if template is None:
        prefix = "authentication failed" if context == "authentication" else "failed to start tunnel"
        template = f"{prefix}: simulated ngrok error"
    prefix = "failed to start tunnel: " if context != "request" else ""
    values = {
        "token": token,
        "url": url,
        "limit": str(DEFAULT_AGENT_LIMIT),
        "version": LATEST_VERSION,
        "prefix": prefix,
        **more,
    }
    text = template
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return f"{text}\r\n\r\n{code}"


def version_tuple(text: object) -> tuple[int, ...]:
    """``"3.30.0"`` -> (3, 30, 0); anything unreadable counts as very old."""
    return tuple(int(n) for n in re.findall(r"\d+", str(text))[:3]) or (0,)


def current_version(control: dict[str, Any]) -> str:
    """The version this fake reports: ``control.json`` ``version``, else the latest."""
    value = control.get("version")
    return str(value) if value else LATEST_VERSION


_DEV_WORDS = (
    "amber",
    "brisk",
    "cedar",
    "dapper",
    "eager",
    "fuzzy",
    "gentle",
    "hazel",
    "ivory",
    "jolly",
    "keen",
    "lunar",
    "mellow",
    "nimble",
    "olive",
    "plucky",
    "quiet",
    "rustic",
    "sunny",
    "tidy",
    "umber",
    "vivid",
    "witty",
    "zesty",
)


def dev_domain(token_hash: str) -> str:
    """The account's one dev domain (facts.md "Dev domains"): fixed for a token, word-word-word."""
    digest = hashlib.sha256(token_hash.encode()).digest()
    words = [_DEV_WORDS[b % len(_DEV_WORDS)] for b in digest[:3]]
    return f"{'-'.join(words)}.{DEV_DOMAIN_SUFFIX}"


# --------------------------------------------------------------------------- /proc


def process_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return None
    return int(fields[19])


def record_is_alive(record: dict[str, Any]) -> bool:
    """Whether the agent an ``agents/PID.json`` record describes still runs (pid reuse-proof)."""
    pid, started = record.get("pid"), record.get("start_time")
    return isinstance(pid, int) and started is not None and process_start_time(pid) == started


# --------------------------------------------------------------------------- control dir


def default_control_dir() -> Path:
    """Where the agent keeps its shared state when ``$FAKE_NGROK_DIR`` is not set."""
    env = os.environ.get(CONTROL_DIR_ENV)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"fake-ngrok-{os.getuid()}"


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ControlDir:
    """The directory that running agents and the tests share."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / AGENTS_DIR).mkdir(parents=True, exist_ok=True)
        (path / OUTAGES_DIR).mkdir(exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize check-then-act steps (session and domain ownership) across agents."""
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def read_control(self) -> dict[str, Any]:
        return _read_json_object(self.path / CONTROL_FILE)

    def write_control(self, values: dict[str, Any]) -> None:
        _atomic_write_json(self.path / CONTROL_FILE, values)

    def append_event(self, event: str, **fields: Any) -> None:
        record = {"event": event, "pid": os.getpid(), "at": time.time(), **fields}
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        # O_APPEND with one write per line keeps lines from several agents whole.
        fd = os.open(self.path / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read_events(self) -> list[dict[str, Any]]:
        try:
            text = (self.path / EVENTS_FILE).read_text()
        except OSError:
            return []
        events = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    events.append(item)
        return events

    def agent_records(self) -> list[dict[str, Any]]:
        """Every agent record, stale ones included."""
        records = [_read_json_object(p) for p in sorted((self.path / AGENTS_DIR).glob("*.json"))]
        return [r for r in records if r]

    def live_agents(self) -> list[dict[str, Any]]:
        return [r for r in self.agent_records() if record_is_alive(r)]

    def holding_agents(self) -> list[dict[str, Any]]:
        """Agents whose session the edge still counts: live ones, and killed ones within the stale window.

        facts.md "One dev domain, several agents": after an abrupt end the edge keeps the
        endpoint online until its heartbeat times out. A clean stop removes the record at once.
        """
        try:
            window = float(self.read_control().get("stale_session_seconds") or 0)
        except (TypeError, ValueError):
            window = 0.0
        now = time.time()
        held = []
        for record in self.agent_records():
            if record_is_alive(record) or (
                record.get("state") == "online" and now < float(record.get("heartbeat") or 0) + window
            ):
                held.append(record)
        return held

    def write_agent(self, record: dict[str, Any]) -> None:
        _atomic_write_json(self.path / AGENTS_DIR / f"{record['pid']}.json", record)

    def remove_agent(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / AGENTS_DIR / f"{pid}.json").unlink()

    def domain_port(self, host: str) -> int:
        port = _read_json_object(self.path / DOMAINS_FILE).get(host, 0)
        return port if isinstance(port, int) else 0

    def remember_domain_port(self, host: str, port: int) -> None:
        ports = _read_json_object(self.path / DOMAINS_FILE)
        ports[host] = port
        _atomic_write_json(self.path / DOMAINS_FILE, ports)

    def outage_started_at(self, outage_id: str) -> float:
        """When an outage id was first seen by any agent; claims it now if nobody has."""
        digest = hashlib.sha256(outage_id.encode()).hexdigest()[:32]
        path = self.path / OUTAGES_DIR / f"{digest}.json"
        with self.locked():
            started = _read_json_object(path).get("started_at")
            if isinstance(started, (int, float)):
                return float(started)
            now = time.time()
            _atomic_write_json(path, {"id": outage_id, "started_at": now})
            return now


# --------------------------------------------------------------------------- logging

_BARE_VALUE = re.compile(r"[A-Za-z0-9_.:/@+,\[\]{}<>=-]+")


def quote_logfmt(value: str) -> str:
    """Quote a logfmt value the way ngrok does, so ``shlex`` (pyngrok's NgrokLog) reads it back."""
    if value and _BARE_VALUE.fullmatch(value):
        return value
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def die_of_sigpipe() -> NoReturn:
    """Die the way the Go agent dies when its stdout reader is gone (main thread only)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(141)


class LogSink:
    """ngrok's log: one logfmt (or JSON) line per record, flushed at once."""

    def __init__(self, stream: TextIO | None, *, json_format: bool = False) -> None:
        self.stream = stream
        self.json_format = json_format
        self.lock = threading.Lock()
        self.broken = threading.Event()  # the reader of the log went away
        self.on_broken_pipe: Callable[[], None] = lambda: None

    def log(self, lvl: str, msg: str, obj: str | None = None, **fields: object) -> None:
        if self.stream is None or self.broken.is_set():
            return
        pairs: list[tuple[str, str]] = [("t", time.strftime("%Y-%m-%dT%H:%M:%S%z")), ("lvl", lvl), ("msg", msg)]
        if obj is not None:
            pairs.append(("obj", obj))
        pairs.extend((key, str(value)) for key, value in fields.items())
        if self.json_format:
            line = json.dumps(dict(pairs))
        else:
            line = " ".join(f"{key}={quote_logfmt(value)}" for key, value in pairs)
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except BrokenPipeError:
                self.broken.set()
        if self.broken.is_set():
            # Python sets signal dispositions only in the main thread: Agent.run dies there.
            self.on_broken_pipe()


# --------------------------------------------------------------------------- configuration


class StartupError(Exception):
    """A failure before the session exists: logged as ``command failed``, exit 1."""


@dataclass
class StartOptions:
    configs: list[str] = field(default_factory=list)
    authtoken: str | None = None
    region: str | None = None
    log_target: str | None = None
    log_format: str | None = None
    none: bool = False


_VALUE_FLAGS = {"--config", "--authtoken", "--region", "--log", "--log-format", "--log-level"}
_BOOL_FLAGS = {"--none", "--all"}


def parse_flags(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """``--flag value`` / ``--flag=value`` pairs and positional arguments."""
    flags: dict[str, list[str]] = {}
    positional: list[str] = []
    items = iter(args)
    for arg in items:
        if not arg.startswith("--"):
            positional.append(arg)
            continue
        name, has_value, value = arg.partition("=")
        if name in _BOOL_FLAGS and not has_value:
            flags.setdefault(name, []).append("true")
        elif name in _VALUE_FLAGS or name == "--api-key":
            following = value if has_value else next(items, None)
            if following is None:
                raise StartupError(f"flag needs an argument: {name}")
            flags.setdefault(name, []).append(following)
        else:
            raise StartupError(f"unknown flag: {name}")
    return flags, positional


def parse_start_options(args: list[str]) -> StartOptions:
    flags, positional = parse_flags(args)
    if positional or "--all" in flags:
        raise StartupError("the fake ngrok agent supports only `start --none`")
    configs = [p for value in flags.get("--config", []) for p in value.split(",") if p]
    return StartOptions(
        configs=configs,
        authtoken=flags.get("--authtoken", [None])[-1],
        region=flags.get("--region", [None])[-1],
        log_target=flags.get("--log", [None])[-1],
        log_format=flags.get("--log-format", [None])[-1],
        none="--none" in flags,
    )


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ngrok" / "ngrok.yml"


def load_config(paths: list[str]) -> dict[str, Any]:
    """The agent settings (``authtoken``, ``web_addr``...) merged from v2 or v3 files."""
    settings: dict[str, Any] = {}
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise StartupError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise StartupError(f"Error reading configuration file '{path}': yaml: {e}") from e
        if data is None:
            continue
        if not isinstance(data, dict):
            raise StartupError(f"Error reading configuration file '{path}': not a mapping")
        block = data.get("agent") if str(data.get("version")) == "3" else data
        if block is not None and not isinstance(block, dict):
            raise StartupError(f"Error reading configuration file '{path}': 'agent' is not a mapping")
        settings.update(block or {})
    return settings


def parse_web_addr(value: object) -> tuple[str, int]:
    """``host:port`` or a bare port; loopback IPv4 only, ``localhost`` meaning 127.0.0.1."""
    text = str(value).strip()
    host, _, port_text = text.rpartition(":") if ":" in text else ("", "", text)
    host = "127.0.0.1" if host in ("", "localhost") else host
    try:
        port = int(port_text)
        is_loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError as e:
        raise StartupError(f"invalid web_addr {text!r}: the fake agent takes IPv4 loopback host:port") from e
    if not is_loopback or not 0 <= port <= 65535:
        raise StartupError(f"invalid web_addr {text!r}: the fake agent binds loopback addresses only")
    return host, port


def config_command(args: list[str]) -> int:
    """``config add-authtoken|add-api-key|check``, as pyngrok's set_auth_token runs them."""
    try:
        flags, positional = parse_flags(args)
    except StartupError as e:
        print(f"ERROR:  {e}", file=sys.stderr)
        return 1
    path = Path(flags["--config"][-1]) if "--config" in flags else default_config_path()
    if positional[:1] == ["check"]:
        try:
            load_config([str(path)])
        except StartupError as e:
            print(f"ERROR:  {e}", file=sys.stderr)
            return 1
        print(f"Valid configuration file at {path}")
        return 0
    keys = {"add-authtoken": ("authtoken", "Authtoken"), "add-api-key": ("api_key", "API key")}
    if len(positional) != 2 or positional[0] not in keys:
        print("ERROR:  usage: ngrok config add-authtoken TOKEN | add-api-key KEY | check", file=sys.stderr)
        return 1
    key, label = keys[positional[0]]
    data = _read_yaml_mapping(path)
    if str(data.get("version", "3")) == "3":
        data["version"] = "3"
        agent: dict[str, Any] = data["agent"] if isinstance(data.get("agent"), dict) else {}
        agent[key] = positional[1]
        data["agent"] = agent
    else:
        data[key] = positional[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    print(f"{label} saved to configuration file: {path}")
    return 0


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- traffic policy


class ApiError(Exception):
    """An error the local API answers with ngrok's JSON error shape."""

    def __init__(self, status: int, error_code: int, msg: str, err: str) -> None:
        super().__init__(err)
        self.status = status
        self.error_code = error_code
        self.msg = msg
        self.err = err

    def body(self) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "status_code": self.status,
            "msg": self.msg,
            "details": {"err": self.err},
        }


def invalid_config(err: str) -> ApiError:
    return ApiError(400, 102, "invalid endpoint configuration", err)


# deny and rate-limit are accepted but not enforced: rule expressions are not evaluated here.
SUPPORTED_ACTIONS = ("basic-auth", "oauth", "rate-limit", "deny", "add-headers", "remove-headers")
# HEADER ACTIONS, after ngrok's docs: https://ngrok.com/docs/traffic-policy/actions/add-headers/
# ("this action will only add headers ... if the header already exists it will append another
# header with the same key"), .../actions/remove-headers/, and the costs on
# https://ngrok.com/docs/pricing-limits/traffic-policy-unit-pricing/ (add-headers free,
# remove-headers 1 TPU: paid, like rate-limit).
HEADER_ACTIONS = ("add-headers", "remove-headers")
PAID_ACTIONS = ("rate-limit", "remove-headers")
MAX_HEADER_ACTION_ENTRIES = 10
_PHASES = {
    "on_http_request": "on_http_request",
    "inbound": "on_http_request",
    "on_http_response": "on_http_response",
    "outbound": "on_http_response",
    "on_tcp_connect": "on_tcp_connect",
}


@dataclass
class Policy:
    raw: Any = None
    request_actions: list[dict[str, Any]] = field(default_factory=list)


def _policy_error(detail: str) -> ApiError:
    return invalid_config(f"invalid traffic policy: {detail}\r\n\r\nERR_NGROK_2201")


def _validate_action(action: Any) -> dict[str, Any]:
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        raise _policy_error("every action needs a 'type'")
    kind = action["type"]
    if kind not in SUPPORTED_ACTIONS:
        raise _policy_error(f"action type {kind!r} is not supported by the fake ngrok agent {SUPPORTED_ACTIONS}")
    config = action.get("config") or {}
    if not isinstance(config, dict):
        raise _policy_error(f"the config of {kind!r} must be a mapping")
    if kind == "basic-auth":
        credentials = config.get("credentials")
        if not isinstance(credentials, list) or not credentials:
            raise _policy_error("basic-auth needs a list of credentials")
        for item in credentials:
            user, sep, password = str(item).partition(":")
            if not sep or not user or not 8 <= len(password) <= 128:
                raise _policy_error("basic-auth credentials must be 'user:password', password 8 to 128 chars")
            if "${" in str(item):
                # facts.md "Permanent refusals": `${...}` in a credential is evaluated as an expression.
                raise _policy_error("basic-auth credentials: an expression '${...}' could not be evaluated")
    if kind == "oauth" and not isinstance(config.get("provider"), str):
        raise _policy_error("oauth needs a provider")
    if kind in HEADER_ACTIONS:
        _validate_header_action(kind, config.get("headers"))
    return {"type": kind, "config": config}


def _validate_header_action(kind: str, headers: Any) -> None:
    if kind == "add-headers":
        if not isinstance(headers, dict) or not 1 <= len(headers) <= MAX_HEADER_ACTION_ENTRIES:
            raise _policy_error("add-headers needs 'headers', a map of 1 to 10 names to values")
        for name, value in headers.items():
            if not isinstance(value, str) or "${" in value.replace("${conn.client_ip}", ""):
                raise _policy_error(f"add-headers value of {name!r}: a string; only ${{conn.client_ip}} is evaluated")
    elif not isinstance(headers, list) or not 1 <= len(headers) <= MAX_HEADER_ACTION_ENTRIES:
        raise _policy_error("remove-headers needs 'headers', a list of 1 to 10 names")


def parse_policy(raw: Any, legacy_basic_auth: Any = None) -> Policy:
    """Validate a traffic policy (YAML/JSON text or a mapping) and keep the request actions."""
    document = raw
    if isinstance(raw, str):
        try:
            document = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise _policy_error(f"yaml: {e}") from e
    if document is not None and not isinstance(document, dict):
        raise _policy_error("a traffic policy maps phases to lists of rules")
    actions: list[dict[str, Any]] = []
    for phase, rules in (document or {}).items():
        if phase not in _PHASES:
            raise _policy_error(f"unknown phase {phase!r}")
        if not isinstance(rules, list):
            raise _policy_error(f"{phase} must be a list of rules")
        for rule in rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("actions"), list):
                raise _policy_error("every rule needs a list of actions")
            checked = [_validate_action(a) for a in rule["actions"]]
            for action in checked:
                action["expressions"] = [str(e) for e in rule.get("expressions") or []]
            if _PHASES[phase] == "on_http_request":
                actions.extend(checked)
    if legacy_basic_auth:
        credentials = legacy_basic_auth if isinstance(legacy_basic_auth, list) else [legacy_basic_auth]
        actions.insert(0, _validate_action({"type": "basic-auth", "config": {"credentials": credentials}}))
    return Policy(raw=raw, request_actions=actions)


def _basic_auth_ok(headers: dict[str, str], credentials: list[str]) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return any(hmac.compare_digest(given, str(c).encode()) for c in credentials)


def http_response(status: int, reason: str, body: str, headers: dict[str, str] | None = None) -> bytes:
    payload = body.encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The request target and the lower-cased headers of an HTTP request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    target = parts[1] if len(parts) > 1 else "/"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return target, headers


_SIMPLE_TEST = re.compile(r"^(req\.method|req\.url\.path)\s*==\s*'([^']*)'$")


def rule_applies(expressions: list[str], head: bytes) -> bool:
    """Whether a rule's expressions hold for a request: only `req.method == '...'` and
    `req.url.path == '...'` joined by `&&` are read; any other expression counts as true."""
    target, _ = parse_head(head)
    values = {"req.method": head.split(b" ", 1)[0].decode("latin-1"), "req.url.path": target.partition("?")[0]}
    for expression in expressions:
        for test in expression.split("&&"):
            match = _SIMPLE_TEST.match(test.strip())
            if match is not None and values[match[1]] != match[2]:
                return False
    return True


def evaluate_policy(policy: Policy, head: bytes, public_url: str, no_credit: bool = False) -> bytes | None:
    """The edge's answer to the first request of a connection, or None to forward it.

    `no_credit`: a paid action (rate-limit) is refused per request, for the requests it applies to.
    """
    target, headers = parse_head(head)
    for action in policy.request_actions:
        config = action["config"]
        if action["type"] == "rate-limit" and no_credit and rule_applies(action.get("expressions", []), head):
            # facts.md "Refusals at the edge, per request": 4026 served to requests that run the action.
            return edge_refusal("ERR_NGROK_4026")
        if action["type"] == "basic-auth" and not _basic_auth_ok(headers, config["credentials"]):
            realm = str(config.get("realm", "ngrok")).replace('"', "")
            return http_response(
                401, "Unauthorized", "<h1>401 Unauthorized</h1>", {"WWW-Authenticate": f'Basic realm="{realm}"'}
            )
        if action["type"] == "oauth":
            provider = quote(str(config["provider"]), safe="")
            redirect = quote(public_url.rstrip("/") + target, safe="")
            location = f"https://idp.ngrok.com/oauth2/{provider}/authorize?redirect_uri={redirect}"
            return http_response(302, "Found", f'<a href="{location}">Found</a>', {"Location": location})
    return None


# --------------------------------------------------------------------------- the edge's own pages


CLOUD_ENDPOINT_TITLE = "Your new ngrok Cloud Endpoint!"


def cloud_endpoint_page() -> bytes:
    """What a Cloud Endpoint ngrok created on a new account's dev domain answers (facts.md
    "A Cloud Endpoint on a new account's dev domain"): a placeholder page, no error code."""
    body = (
        f"<!DOCTYPE html><html><head><title>{CLOUD_ENDPOINT_TITLE}</title></head><body>"
        f"<h1>{CLOUD_ENDPOINT_TITLE}</h1><p>Edit its traffic policy at https://dashboard.ngrok.com/endpoints."
        "</p></body></html>"
    )
    return http_response(200, "OK", body)


def answer_offline(client: socket.socket, public_url: str) -> None:
    """What a visitor of an endpoint whose agent is offline gets (facts.md "An offline endpoint")."""
    with contextlib.suppress(OSError):
        if read_head(client) is None:
            client.close()
            return
    host = urlsplit(public_url).netloc
    body = (
        "<!DOCTYPE html><html><head><title>ngrok - ERR_NGROK_3200</title></head><body>"
        f"<h1>The endpoint {host} is offline.</h1><p>ERR_NGROK_3200</p></body></html>"
    )
    send_and_close(client, http_response(404, "Not Found", body, {"ngrok-error-code": "ERR_NGROK_3200"}))


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found[name] = value
    return found


def browser_warning(head: bytes, public_url: str) -> bytes | None:
    """The free plan's warning page for browsers, or None when this request skips it.

    facts.md "Free plan limits": shown to browsers (a Mozilla User-Agent) until the visitor
    clicks through it; a cookie then keeps it away; the ``ngrok-skip-browser-warning`` header
    (any value) or a non-browser User-Agent skips it. A websocket opened before fails, since
    its upgrade gets this page instead of a 101.
    """
    target, headers = parse_head(head)
    if "ngrok-skip-browser-warning" in headers or not is_browser(headers.get("user-agent", "")):
        return None
    host = urlsplit(public_url).hostname or ""
    if _cookies(headers).get(WARNING_COOKIE) == host:
        return None
    path, _, query = target.partition("?")
    if path == WARNING_PATH and head.startswith(b"POST "):
        wanted = unquote(query.partition("next=")[2]) or "/"
        location = wanted if wanted.startswith("/") and not wanted.startswith("//") else "/"
        return http_response(
            302,
            "Found",
            "",
            {"Location": location, "Set-Cookie": f"{WARNING_COOKIE}={host}; Path=/; Max-Age=604800; SameSite=Lax"},
        )
    shown = urlsplit(public_url).netloc
    action = f"{WARNING_PATH}?next={quote(target, safe='')}"
    body = (
        "<!DOCTYPE html><html><head><title>ngrok</title></head><body>"
        f"<h1>You are about to visit {shown}</h1>"
        "<p>This site is served for free through ngrok. Only continue if you trust whoever sent you "
        "the link: do not enter passwords or other secrets on sites you do not know.</p>"
        f'<form method="post" action="{action}"><button type="submit">{WARNING_BUTTON}</button></form>'
        "</body></html>"
    )
    return http_response(200, "OK", body, {"ngrok-error-code": WARNING_CODE})


_BROWSER_MARKS = ("mozilla", "chrome", "safari", "firefox", "opera", "edg/")


def is_browser(user_agent: str) -> bool:
    """A browser's User-Agent, whichever browser (facts.md "Free plan limits": a browser User-Agent)."""
    lowered = user_agent.lower()
    return any(mark in lowered for mark in _BROWSER_MARKS)


# facts.md "Refusals at the edge, per request": quota codes answer every request while the
# session stays up. The HTTP status of these pages is not established; the product reads the header.
EDGE_REFUSAL_STATUS = {"ERR_NGROK_725": 429, "ERR_NGROK_727": 429, "ERR_NGROK_734": 429, "ERR_NGROK_4026": 402}


def edge_refusal(code: str) -> bytes:
    """ngrok's own error page for a request the edge refuses, with its code in `ngrok-error-code`."""
    text = error_message(code, context="request").removeprefix("authentication failed: ")
    text = text.replace("\r\n\r\n", " ").replace("\n", " ")
    body = f"<!DOCTYPE html><html><head><title>ngrok - {code}</title></head><body><p>{text}</p></body></html>"
    status = EDGE_REFUSAL_STATUS.get(code, 403)
    return http_response(status, "Refused", body, {"ngrok-error-code": code})


# --------------------------------------------------------------------------- forwarding


@dataclass(frozen=True)
class Upstream:
    url: str
    host: str
    port: int


def parse_upstream(value: object) -> Upstream:
    """``http://127.0.0.1:8888``, ``localhost:8888`` or ``8888``."""
    text = str(value).strip()
    if text.isdigit():
        return Upstream(text, "localhost", int(text))
    parsed = urlsplit(text if "://" in text else f"//{text}")
    try:
        port = parsed.port or {"https": 443, "tls": 443}.get(parsed.scheme, 80)
    except ValueError as e:
        raise invalid_config(f"invalid upstream url {text!r}: {e}") from e
    if not parsed.hostname:
        raise invalid_config(f"invalid upstream url {text!r}")
    return Upstream(text, parsed.hostname, port)


def dial_upstream(upstream: Upstream) -> socket.socket:
    """Connect to a loopback upstream; anything else fails like an unreachable host."""
    host = upstream.host
    if host == "localhost" or host.endswith(".localhost"):
        host = "127.0.0.1"
    address = f"{host}:{upstream.port}"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise OSError(f"dial tcp {address}: the fake ngrok agent forwards to loopback upstreams only")
    try:
        sock = socket.create_connection((host, upstream.port), timeout=DIAL_TIMEOUT_SECONDS)
    except ConnectionRefusedError as e:
        raise OSError(f"dial tcp {address}: connect: connection refused") from e
    except OSError as e:
        raise OSError(f"dial tcp {address}: {e}") from e
    sock.settimeout(None)
    return sock


def bad_gateway(upstream: Upstream, err: str) -> bytes:
    address = f"{upstream.host}:{upstream.port}"
    body = (
        "<!DOCTYPE html><html><head><title>ngrok - ERR_NGROK_8012</title></head><body>"
        "<h1>Bad Gateway</h1><p>Traffic was successfully tunneled to the ngrok agent, but the agent "
        f"failed to establish a connection to the upstream web service at {address}. "
        f"The error encountered was: {err}</p><p>ERR_NGROK_8012</p></body></html>"
    )
    return http_response(502, "Bad Gateway", body, {"ngrok-error-code": "ERR_NGROK_8012"})


def read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The request head (through the blank line) and any bytes already read after it."""
    sock.settimeout(HEAD_TIMEOUT_SECONDS)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD_BYTES:
            return None
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    sock.settimeout(None)
    end = buffer.index(b"\r\n\r\n") + 4
    return buffer[:end], buffer[end:]


def send_and_close(sock: socket.socket, data: bytes) -> None:
    """Answer and close without a reset, so the client reads the answer."""
    with contextlib.suppress(OSError):
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        # Drain what the client still sends (a body) so close() does not turn into a RST.
        sock.settimeout(0.2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    sock.close()


def reset_close(sock: socket.socket) -> None:
    """Close with a TCP reset, as a dropped edge connection looks to a client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Link:
    """One public connection and, once dialled, its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        try:
            host, port = client.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "unknown"

    def abort(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()

    def pump(self, src: socket.socket, dst: socket.socket, wait_gate: Callable[[], bool]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or not wait_gate():
                    break
                dst.sendall(data)
        except OSError:
            self.abort()
            return
        # Pass the half-close on: the other direction may still carry data.
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def splice(self, wait_gate: Callable[[], bool]) -> None:
        assert self.upstream is not None
        back = threading.Thread(target=self.pump, args=(self.upstream, self.client, wait_gate), daemon=True)
        back.start()
        self.pump(self.client, self.upstream, wait_gate)
        back.join()


class HeaderRewriter:
    """What the edge changes in each request head: its header actions, then the forwarded headers."""

    def __init__(self, actions: list[dict[str, Any]], client_ip: str) -> None:
        self.actions = [a for a in actions if a["type"] in HEADER_ACTIONS]
        self.client_ip = client_ip

    def __call__(self, head: bytes) -> bytes:
        request_line, *lines = head.decode("latin-1").split("\r\n")
        pairs = [(n.strip(), v.strip()) for n, sep, v in (line.partition(":") for line in lines if line) if sep]
        for action in self.actions:
            headers = action["config"]["headers"]
            if action["type"] == "remove-headers":
                gone = {str(name).lower() for name in headers}
                pairs = [(n, v) for n, v in pairs if n.lower() not in gone]
            else:  # add-headers: appended, names lowercased, as ngrok's docs say
                pairs += [
                    (str(n).lower(), str(v).replace("${conn.client_ip}", self.client_ip)) for n, v in headers.items()
                ]
        pairs = self._append(pairs, "X-Forwarded-For", self.client_ip)
        pairs = self._append(pairs, "X-Forwarded-Proto", "http")  # the stand-in's public side is plain http
        return ("\r\n".join([request_line, *(f"{n}: {v}" for n, v in pairs)]) + "\r\n\r\n").encode("latin-1")

    @staticmethod
    def _append(pairs: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
        """Append `value` to the client's list header, or add the header."""
        for i in range(len(pairs) - 1, -1, -1):
            if pairs[i][0].lower() == name.lower():
                pairs[i] = (pairs[i][0], f"{pairs[i][1]}, {value}")
                return pairs
        return [*pairs, (name, value)]


class RequestReader:
    """Reads a client's requests one by one from its socket (heads, then bodies by their framing)."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buffer = buffered

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD_BYTES or not self._fill():
                return None
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    def exactly(self, count: int) -> bytes | None:
        while len(self.buffer) < count:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD_BYTES or not self._fill():
                return None
        end = self.buffer.index(b"\r\n") + 2
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def chunked_body(self) -> bytes | None:
        """A chunked body as it came, through the last chunk and its trailers."""
        body = b""
        while True:
            size_line = self.line()
            if size_line is None:
                return None
            body += size_line
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while (trailer := self.line()) not in (None, b"\r\n"):
                    body += trailer
                return None if trailer is None else body + trailer
            chunk = self.exactly(size + 2)
            if chunk is None:
                return None
            body += chunk


def forward_requests(
    link: Link, head: bytes, rest: bytes, rewrite: Callable[[bytes], bytes], wait_gate: Callable[[], bool]
) -> None:
    """Client to upstream, one request at a time, each head rewritten; raw bytes after an upgrade."""
    assert link.upstream is not None
    reader = RequestReader(link.client, rest)
    current: bytes | None = head
    try:
        while current is not None and wait_gate():
            _, headers = parse_head(current)
            link.upstream.sendall(rewrite(current))
            if "upgrade" in headers.get("connection", "").lower() or current.startswith(b"CONNECT "):
                link.upstream.sendall(reader.buffer)
                link.pump(link.client, link.upstream, wait_gate)  # a websocket: bytes from here on
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = reader.chunked_body()
            else:
                body = reader.exactly(int(headers.get("content-length") or 0))
            if body is None:
                break
            link.upstream.sendall(body)
            current = reader.head()
    except (OSError, ValueError):
        link.abort()
        return
    with contextlib.suppress(OSError):
        link.upstream.shutdown(socket.SHUT_WR)


def bind_listener(port: int, patience: float = 0.0) -> socket.socket:
    """Listen on loopback `port` (0: any); a busy port is tried again for `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR lets a reserved domain take its port back while old connections linger.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
        except OSError:
            listener.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
            continue
        listener.settimeout(0.2)
        return listener


class Endpoint:
    """A public listener that forwards to one upstream."""

    def __init__(
        self,
        agent: Agent,
        spec: dict[str, Any],
        *,
        name: str,
        public_url: str,
        proto: str,
        upstream: Upstream,
        policy: Policy,
        domain: str | None,
        listener: socket.socket,
    ) -> None:
        self.agent = agent
        self.spec = spec
        self.id = f"ep_{secrets.token_hex(12)}"
        self.name = name
        self.public_url = public_url
        self.proto = proto
        self.upstream = upstream
        self.policy = policy
        self.domain = domain
        self.listener = listener
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.links: set[Link] = set()
        self.conns_total = 0
        self.http_total = 0
        self.thread = threading.Thread(target=self._accept_loop, name=f"endpoint-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.thread.join(timeout=2)
        self.listener.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        with self.lock:
            links = list(self.links)
        for link in links:
            link.abort()

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            client.settimeout(None)
            if not self.agent.online.is_set():
                if self.proto == "http":
                    # facts.md "An offline endpoint": the edge answers 404 with ERR_NGROK_3200.
                    threading.Thread(target=answer_offline, args=(client, self.public_url), daemon=True).start()
                else:
                    reset_close(client)  # the cloud side is gone: nothing answers
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        link = Link(client)
        with self.lock:
            self.links.add(link)
            self.conns_total += 1
        try:
            # A connection that slipped in while an outage began is dropped like the others.
            if self.agent.wait_gate() and self.agent.online.is_set():
                self._forward(link)
        except OSError:
            link.abort()
        finally:
            with self.lock:
                self.links.discard(link)
            link.close()

    def _forward(self, link: Link) -> None:
        head, rest = b"", b""
        if self.proto == "http":
            got = read_head(link.client)
            if got is None:
                return
            head, rest = got
            with self.lock:
                self.http_total += 1
            control = self.agent.control.read_control()
            quota = normalize_error_code(control.get("edge_refusal"))
            if quota is not None:
                # facts.md "Refusals at the edge, per request": refused at the edge, session up.
                send_and_close(link.client, edge_refusal(quota))
                return
            if control.get("browser_warning", True):
                warning = browser_warning(head, self.public_url)
                if warning is not None:
                    send_and_close(link.client, warning)
                    return
            no_credit = not control.get("credit") and control.get("credit_refused_at") == "request"
            refusal = evaluate_policy(self.policy, head, self.public_url, no_credit)
            if refusal is not None:
                send_and_close(link.client, refusal)
                return
        try:
            link.upstream = dial_upstream(self.upstream)
        except OSError as e:
            self.agent.log.log(
                "warn",
                "failed to open private leg",
                "tunnels.session",
                id=self.id,
                privaddr=f"{self.upstream.host}:{self.upstream.port}",
                err=str(e),
            )
            if self.proto == "http":
                send_and_close(link.client, bad_gateway(self.upstream, str(e)))
            return
        if self.agent.control.read_control().get("join_log", True):
            # facts.md "Per-connection log lines": one info line per proxied connection, with the visitor's address.
            self.agent.log.log(
                "info",
                "join connections",
                "join",
                id=secrets.token_hex(6),
                l=f"{self.upstream.host}:{self.upstream.port}",
                r=link.peer,
            )
        if self.proto != "http":
            link.upstream.sendall(head + rest)
            link.splice(self.agent.wait_gate)
            return
        client_ip = str(link.client.getpeername()[0])
        rewrite = HeaderRewriter(self.policy.request_actions, client_ip)
        back = threading.Thread(target=link.pump, args=(link.upstream, link.client, self.agent.wait_gate), daemon=True)
        back.start()
        forward_requests(link, head, rest, rewrite, self.agent.wait_gate)
        back.join()

    def metrics(self) -> dict[str, Any]:
        with self.lock:
            gauge, conns, http = len(self.links), self.conns_total, self.http_total
        zeros = {"rate1": 0, "rate5": 0, "rate15": 0, "p50": 0, "p90": 0, "p95": 0, "p99": 0}
        return {"conns": {"count": conns, "gauge": gauge, **zeros}, "http": {"count": http, **zeros}}

    def endpoint_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "uri": f"/api/endpoints/{quote(self.name, safe='')}",
            "url": self.public_url,
            "upstream": {"url": self.upstream.url, "protocol": "http1"},
            "traffic_policy": self.policy.raw if self.policy.raw is not None else "",
            "pooling_enabled": bool(self.spec.get("pooling_enabled", False)),
            "inspect": bool(self.spec.get("inspect", False)),
            "metrics": self.metrics(),
        }

    def tunnel_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "name": self.name,
            "uri": f"/api/tunnels/{quote(self.name, safe='')}",
            "public_url": self.public_url,
            "proto": self.public_url.split("://", 1)[0],
            "config": {"addr": self.upstream.url, "inspect": bool(self.spec.get("inspect", False))},
            "metrics": self.metrics(),
        }


# --------------------------------------------------------------------------- local API


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], agent: Agent) -> None:
        self.agent = agent
        super().__init__(address, ApiHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, hang) before its answer is not worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ngrok"
    sys_version = ""
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        """http.server's own access log: the agent logs its calls itself (see _dispatch)."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        agent = cast(ApiServer, self.server).agent
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if not agent.wait_gate():
            self.close_connection = True
            return
        page = urlsplit(self.path).path
        call_id = secrets.token_hex(4)
        started = time.monotonic()
        # facts.md "Log lines": the agent logs every local API call at info, a start and an end line.
        control = agent.control.read_control()
        logged = bool(control.get("api_log", True))
        if control.get("record_api_calls"):  # a test's way to count the keeper's health checks
            agent.control.append_event("api_call", method=method, page=page)
        if logged:
            agent.log.log("info", "start", pg=page, id=call_id)
        status, payload = agent.handle_api(method, page, body)
        if logged:
            took = f"{(time.monotonic() - started) * 1000:.3f}ms"
            agent.log.log("info", "end", pg=page, id=call_id, status=status, dur=took)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def start_api_server(host: str, port: int, agent: Agent) -> ApiServer:
    """Bind the web service, moving to the next ports while they are busy, as ngrok does."""
    tries = 1 if port == 0 else WEB_PORT_TRIES
    last: OSError | None = None
    for candidate in range(port, min(port + tries, 65536)):
        try:
            server = ApiServer((host, candidate), agent)
        except OSError as e:
            last = e
            continue
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return server
    raise StartupError(f"listen tcp {host}:{port}: bind: {last.strerror if last else 'failed'}")


# --------------------------------------------------------------------------- the agent

_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def token_id(token: str) -> str:
    """What the registry keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def requested_address(spec: dict[str, Any], legacy: bool) -> tuple[str, str | None]:
    """(proto, reserved host or None) from an endpoint or tunnel definition."""
    if legacy:
        proto = str(spec.get("proto") or "http")
        host = spec.get("domain") or spec.get("hostname")
        if not host and spec.get("subdomain"):
            host = f"{spec['subdomain']}.{RANDOM_DOMAIN_SUFFIX}"
    else:
        url = str(spec.get("url") or "")
        scheme, sep, rest = url.partition("://")
        proto, host = (scheme or "https", rest) if sep else ("https", url)
        host = host.split("/", 1)[0].rsplit(":", 1)[0] if host else None
    proto = {"https": "http", "http": "http", "tcp": "tcp"}.get(proto.lower(), proto)
    if proto not in ("http", "tcp"):
        raise invalid_config(f"protocol {proto!r} is not supported by the fake ngrok agent (http, https, tcp)")
    host = str(host).lower() if host else None
    if host is not None and not _HOST.fullmatch(host):
        raise invalid_config(f"invalid domain {host!r}")
    return proto, host


class Agent:
    """One running fake agent: session state, endpoints and the local API."""

    def __init__(self, control: ControlDir, log: LogSink, options: StartOptions) -> None:
        self.control = control
        self.log = log
        self.options = options
        self.pid = os.getpid()
        self.started_at = time.time()
        self.region = options.region or "us"
        self.record: dict[str, Any] = {
            "pid": self.pid,
            "start_time": process_start_time(self.pid),
            "state": "starting",
            "token_id": None,
            "domains": [],
            "web_addr": None,
        }
        self.lock = threading.RLock()
        self.endpoints: dict[str, Endpoint] = {}
        self.gate = threading.Event()  # set while not hung
        self.gate.set()
        self.online = threading.Event()  # set while the (simulated) cloud session is up
        self.stopping = threading.Event()
        self.server: ApiServer | None = None
        self.api_url = ""
        self.outage: tuple[str, float] | None = None
        self.outage_ends: dict[str, float] = {}
        self.done_outages: set[str] = set()
        self.next_outage_log = 0.0
        self.reconnect_delay = RECONNECT_FIRST_SECONDS
        self.reconnects = 0
        self.established_at: float | None = None
        self.version = current_version(control.read_control())
        self.token_id = ""
        self.next_heartbeat = 0.0

    # ---- lifecycle

    def run(self) -> int:
        self.control.write_agent(self.record)
        try:
            code = self._run()
        finally:
            if self.server is not None:
                self.server.shutdown()
                self.server.server_close()
            self.control.remove_agent(self.pid)
        if self.log.broken.is_set():
            self.control.append_event("exited", code=-int(signal.SIGPIPE), reason="sigpipe", url=self.api_url)
            die_of_sigpipe()
        return code

    def _run(self) -> int:
        if self.control.read_control().get("silent"):
            # Stuck at start-up: no log line, no API, until stopped (SIGTERM) or killed.
            while not self.stopping.wait(CONTROL_POLL_SECONDS):
                pass
            return 0
        try:
            settings = self._load_settings()
            host, port = parse_web_addr(settings.get("web_addr", DEFAULT_WEB_ADDR))
            self.server = start_api_server(host, port, self)
        except StartupError as e:
            self.log.log("crit", "command failed", err=str(e))
            print(f"ERROR:  {e}", file=sys.stderr)
            self.control.append_event("startup_failed", error_code=None, error=str(e))
            return 1
        bound_host, bound_port = self.server.socket.getsockname()[:2]
        self.api_url = f"http://{bound_host}:{bound_port}"
        self.record["web_addr"] = f"{bound_host}:{bound_port}"
        self.control.write_agent(self.record)
        # The API already answers: serve_forever runs before this line is printed.
        self.log.log("info", "starting web service", "web", addr=f"{bound_host}:{bound_port}", allow_hosts="[]")
        token = self._token(settings)
        failure = self._authenticate(token)
        if failure is not None:
            self._fail_session(*failure)
            return 1
        self._wait_out_startup_outage()
        if self.stopping.is_set():
            return self._shutdown()
        self.online.set()
        self.established_at = time.time()
        self.log.log("info", "client session established", "tunnels.session")
        self.log.log("info", "tunnel session started", "tunnels.session")
        self.control.append_event("started", url=self.api_url, region=self.region)
        while not self.stopping.wait(CONTROL_POLL_SECONDS):
            self.tick()
        return self._shutdown()

    def _load_settings(self) -> dict[str, Any]:
        paths = self.options.configs
        if not paths:
            self.log.log("info", "no configuration paths supplied")
            default = default_config_path()
            paths = [str(default)] if default.exists() else []
            for path in paths:
                self.log.log("info", "using configuration at default config path", path=path)
        settings = load_config(paths)
        for path in paths:
            self.log.log("info", "open config file", path=path, err="nil")
        if self.options.log_format is None and settings.get("log_format") == "json":
            self.log.json_format = True
        return settings

    def _token(self, settings: dict[str, Any]) -> str:
        token = self.options.authtoken or os.environ.get("NGROK_AUTHTOKEN") or settings.get("authtoken")
        return str(token) if token else ""

    def _authenticate(self, token: str) -> tuple[str, str] | None:
        """None when the simulated service accepts the session, else (code, message)."""
        control = self.control.read_control()
        forced = normalize_error_code(control.get("startup_error"))
        if forced is not None:
            return forced, error_message(forced, token=token, version=self.version)
        minimum = control.get("min_agent_version")  # facts.md "Agent versions": ERR_NGROK_121
        if minimum and version_tuple(self.version) < version_tuple(minimum):
            return "ERR_NGROK_121", error_message("ERR_NGROK_121", version=self.version, min_version=str(minimum))
        if not token:
            return "ERR_NGROK_4018", error_message("ERR_NGROK_4018")
        for prefix, code in (("bad", "ERR_NGROK_105"), ("revoked", "ERR_NGROK_107")):
            if token.startswith(prefix):
                return code, error_message(code, token=token)
        with self.control.locked():
            mine = token_id(token)
            holders = [
                r
                for r in self.control.holding_agents()
                if r.get("pid") != self.pid and r.get("token_id") == mine and r.get("state") == "online"
            ]
            limit = int(control.get("agent_limit") or DEFAULT_AGENT_LIMIT)
            if len(holders) >= limit:
                return "ERR_NGROK_108", error_message("ERR_NGROK_108", limit=str(limit))
            self.token_id = mine
            self.record.update(state="online", token_id=mine, heartbeat=time.time())
            self.control.write_agent(self.record)
        return None

    def _fail_session(self, code: str, message: str) -> None:
        self.record["state"] = "failed"
        self.control.write_agent(self.record)
        self.log.log("eror", "failed to reconnect session", "tunnels.session", err=message)
        self.log.log("eror", "session closing", "tunnels.session", err=message)
        self.log.log("eror", "terminating with error", "app", err=message)
        self.log.log("crit", "command failed", err=message)
        for line in message.replace("\r", "").split("\n"):
            print(f"ERROR:  {line}", file=sys.stderr)
        self.control.append_event("startup_failed", error_code=code, url=self.api_url)

    def _shutdown(self) -> int:
        self.log.log("info", "received stop request", "app", stopReq="{err:<nil> restart:false}")
        with self.lock:
            endpoints = list(self.endpoints.values())
            self.endpoints.clear()
        for endpoint in endpoints:
            endpoint.close()
        self.log.log("info", "session closing", "tunnels.session", err="nil")
        if not self.log.broken.is_set():
            self.control.append_event("exited", code=0, reason="signal", url=self.api_url)
        return 0

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def stop_for_broken_pipe(self) -> None:
        self.stopping.set()

    def wait_gate(self) -> bool:
        """Block while hung; False when the agent is stopping instead."""
        while not self.gate.wait(CONTROL_POLL_SECONDS):
            if self.stopping.is_set():
                return False
        return not self.stopping.is_set()

    # ---- fault injection

    def _outage_window(self, control: dict[str, Any]) -> tuple[str, float] | None:
        """The outage (id, end time) in force now that this agent has not lived through yet."""
        spec = control.get("outage")
        if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
            return None
        outage_id = spec["id"]
        if outage_id in self.done_outages:
            return None
        if outage_id not in self.outage_ends:
            try:
                seconds = float(spec.get("seconds", 0))
            except (TypeError, ValueError):
                return None
            self.outage_ends[outage_id] = self.control.outage_started_at(outage_id) + seconds
        if time.time() >= self.outage_ends[outage_id]:
            self.done_outages.add(outage_id)
            return None
        return outage_id, self.outage_ends[outage_id]

    def _log_reconnect_failure(self) -> None:
        self.log.log(
            "eror",
            "failed to reconnect session",
            "tunnels.session",
            err="dial tcp: lookup connect.ngrok-agent.com: no such host",
        )
        self.next_outage_log = time.monotonic() + self.reconnect_delay
        self.reconnect_delay = min(self.reconnect_delay * 2, RECONNECT_MAX_SECONDS)

    def _wait_out_startup_outage(self) -> None:
        while not self.stopping.is_set() and self._outage_window(self.control.read_control()):
            self._log_reconnect_failure()
            self.stopping.wait(max(0.0, self.next_outage_log - time.monotonic()))

    def tick(self) -> None:
        """Apply control.json: hang and outages; keep the heartbeat the stale-session window counts from."""
        control = self.control.read_control()
        if time.monotonic() >= self.next_heartbeat and self.record.get("state") == "online":
            self.next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
            with self.control.locked():
                self.record["heartbeat"] = time.time()
                self.control.write_agent(self.record)
        if control.get("hang"):
            self.gate.clear()
        else:
            self.gate.set()
        if self.outage is None:
            window = self._outage_window(control)
            if window is not None:
                self._begin_outage(window)
        elif time.monotonic() >= self.next_outage_log:
            # The session comes back at the first reconnect attempt after the outage.
            if time.time() >= self.outage[1]:
                self._end_outage()
            else:
                self._log_reconnect_failure()

    def _begin_outage(self, window: tuple[str, float]) -> None:
        self.outage = window
        self.reconnect_delay = RECONNECT_FIRST_SECONDS
        self.online.clear()
        with self.lock:
            endpoints = list(self.endpoints.values())
        for endpoint in endpoints:
            endpoint.drop_connections()
        # facts.md "Log lines": the session-loss line is at error level.
        self.log.log(
            "eror",
            "session closed, starting reconnect loop",
            "tunnels.session",
            err="read tcp: connection reset by peer",
        )
        self._log_reconnect_failure()
        self.control.append_event("outage_started", id=window[0], urls=[e.public_url for e in endpoints])

    def _end_outage(self) -> None:
        assert self.outage is not None
        outage_id = self.outage[0]
        self.done_outages.add(outage_id)
        self.outage = None
        self.reconnects += 1
        self.established_at = time.time()
        self.online.set()
        self.log.log("info", "client session established", "tunnels.session")
        with self.lock:
            urls = [e.public_url for e in self.endpoints.values()]
        self.control.append_event("outage_ended", id=outage_id, urls=urls)

    # ---- local API

    def handle_api(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.split("/") if p]
        routes: dict[tuple[str, str, int], Callable[[list[str], bytes], tuple[int, Any]]] = {
            ("GET", "api/endpoints", 2): lambda p, b: (200, self._list(legacy=False)),
            ("GET", "api/tunnels", 2): lambda p, b: (200, self._list(legacy=True)),
            ("POST", "api/endpoints", 2): lambda p, b: self._create(b, legacy=False),
            ("POST", "api/tunnels", 2): lambda p, b: self._create(b, legacy=True),
            ("GET", "api/endpoints", 3): lambda p, b: self._get(p[2], legacy=False),
            ("GET", "api/tunnels", 3): lambda p, b: self._get(p[2], legacy=True),
            ("DELETE", "api/endpoints", 3): lambda p, b: self._delete(p[2]),
            ("DELETE", "api/tunnels", 3): lambda p, b: self._delete(p[2]),
            ("GET", "api/status", 2): lambda p, b: (200, self._status()),
            ("GET", "api/requests", 3): lambda p, b: (200, {"requests": [], "uri": "/api/requests/http"}),
        }
        if version_tuple(self.version) < ENDPOINTS_API_SINCE:
            # facts.md "Agent versions": older agents have only /api/tunnels; pyngrok 9 never sees them healthy.
            routes = {key: value for key, value in routes.items() if key[1] != "api/endpoints"}
        route = routes.get((method, "/".join(parts[:2]), len(parts)))
        if route is None:
            error = ApiError(404, 100, "Not Found", f"no such API route: {method} {path}")
            return error.status, error.body()
        try:
            return route(parts, body)
        except ApiError as e:
            return e.status, e.body()

    def _list(self, *, legacy: bool) -> dict[str, Any]:
        with self.lock:
            endpoints = list(self.endpoints.values())
        if legacy:
            return {"tunnels": [e.tunnel_json() for e in endpoints], "uri": "/api/tunnels"}
        return {"endpoints": [e.endpoint_json() for e in endpoints], "uri": "/api/endpoints"}

    def _find(self, name: str) -> Endpoint:
        with self.lock:
            endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ApiError(404, 100, f"Endpoint {name!r} not found", f"Endpoint {name!r} not found")
        return endpoint

    def _get(self, name: str, *, legacy: bool) -> tuple[int, Any]:
        endpoint = self._find(name)
        return 200, endpoint.tunnel_json() if legacy else endpoint.endpoint_json()

    def _delete(self, name: str) -> tuple[int, Any]:
        endpoint = self._find(name)
        with self.lock:
            self.endpoints.pop(name, None)
        endpoint.close()
        if endpoint.domain is not None:
            with self.control.locked():
                self.record["domains"] = [d for d in self.record["domains"] if d != endpoint.domain]
                self.control.write_agent(self.record)
        self.log.log("info", "stopped tunnel", "tunnels", name=name, url=endpoint.public_url)
        self.control.append_event("endpoint_deleted", name=name, url=endpoint.public_url)
        return 204, None

    def _status(self) -> dict[str, Any]:
        # facts.md "The local API": region and latency per session leg, latency a Go duration string.
        return {
            "status": "online" if self.online.is_set() else "reconnecting",
            "agent_version": self.version,
            "session": {"legs": [{"region": self.region, "latency": "12.345678ms"}]},
            "uri": "/api/status",
        }

    def _create(self, body: bytes, *, legacy: bool) -> tuple[int, Any]:
        try:
            spec = json.loads(body or b"{}")
        except ValueError as e:
            raise invalid_config(f"invalid JSON body: {e}") from e
        if not isinstance(spec, dict):
            raise invalid_config("the body must be a JSON object")
        name = str(spec.get("name") or f"endpoint-{secrets.token_hex(4)}")
        upstream_value = spec.get("addr", "80") if legacy else (spec.get("upstream") or {}).get("url")
        if upstream_value is None:
            raise invalid_config("an endpoint needs upstream.url")
        upstream = parse_upstream(upstream_value)
        proto, domain = requested_address(spec, legacy)
        policy = parse_policy(spec.get("traffic_policy"), spec.get("basic_auth"))
        control = self.control.read_control()
        forced = normalize_error_code(control.get("endpoint_error"))
        if forced is not None:
            url = f"https://{domain or RANDOM_DOMAIN_SUFFIX}"
            raise ApiError(400, 103, "failed to start tunnel", error_message(forced, url=url, context="endpoint"))
        paid = any(a["type"] in PAID_ACTIONS for a in policy.request_actions)
        if not control.get("credit") and paid and control.get("credit_refused_at", "creation") == "creation":
            # facts.md "Traffic policy costs": paid actions need credit; without it ERR_NGROK_4026.
            message = error_message("ERR_NGROK_4026", context="endpoint")
            raise ApiError(400, 103, "failed to start tunnel", message)
        if domain is not None and not control.get("custom_domains", True) and domain != dev_domain(self.token_id):
            # facts.md "Permanent refusals": a domain of one's own needs a paid plan (ERR_NGROK_313).
            raise ApiError(400, 103, "failed to start tunnel", error_message("ERR_NGROK_313", url=domain))
        if domain is None and proto == "http" and control.get("dev_domain", True) and self.token_id:
            domain = dev_domain(self.token_id)  # facts.md "Dev domains": no URL -> the account's dev domain
        with self.lock:
            if name in self.endpoints:
                raise invalid_config(f"an endpoint named {name!r} already exists in this agent session")
        listener, public_url = self._open_listener(proto, domain)
        endpoint = Endpoint(
            self,
            spec,
            name=name,
            public_url=public_url,
            proto=proto,
            upstream=upstream,
            policy=policy,
            domain=domain,
            listener=listener,
        )
        with self.lock:
            if name in self.endpoints:  # a concurrent POST won the name
                listener.close()
                raise invalid_config(f"an endpoint named {name!r} already exists in this agent session")
            self.endpoints[name] = endpoint
        endpoint.start()
        self.log.log("info", "started tunnel", "tunnels", name=name, addr=upstream.url, url=public_url)
        self.control.append_event("endpoint_created", name=name, url=public_url, upstream=upstream.url)
        return 201, endpoint.tunnel_json() if legacy else endpoint.endpoint_json()

    def _open_listener(self, proto: str, domain: str | None) -> tuple[socket.socket, str]:
        scheme = "tcp://" if proto == "tcp" else "http://"
        if domain is None:
            listener = bind_listener(0)
            prefix = "0.tcp" if proto == "tcp" else secrets.token_hex(4)
            host = f"{prefix}.{RANDOM_DOMAIN_SUFFIX}"
            return listener, f"{scheme}{host}:{listener.getsockname()[1]}"
        with self.control.locked():
            # facts.md "One dev domain, several agents": a URL online elsewhere (or still held by a
            # killed agent's stale session, or by another endpoint of this agent) -> ERR_NGROK_334.
            held = [r for r in self.control.holding_agents() if domain in r.get("domains", [])]
            # facts.md "A Cloud Endpoint on a new account's dev domain": it holds the URL like an agent
            # (334 with no other agent running); FakeNgrok.start_cloud_endpoint serves its page there.
            cloud = domain in (self.control.read_control().get("cloud_endpoints") or [])
            if held or cloud or domain in self.record["domains"]:
                port = self.control.domain_port(domain)
                url = f"http://{domain}:{port}" if cloud and port else f"https://{domain}"
                raise ApiError(
                    400, 103, "failed to start tunnel", error_message("ERR_NGROK_334", url=url, context="endpoint")
                )
            # Claimed before the port is bound: the offline edge (a thread of FakeNgrok) that
            # answers for the URL meanwhile sees the claim and lets the port go.
            self.record["domains"] = [*self.record["domains"], domain]
            self.control.write_agent(self.record)
            refusing = self.control.read_control().get("offline_edge") is False
            patience = 0.0 if refusing else OFFLINE_EDGE_HANDOVER_SECONDS
            try:
                listener = bind_listener(self.control.domain_port(domain), patience)
            except OSError as e:
                self.record["domains"] = [d for d in self.record["domains"] if d != domain]
                self.control.write_agent(self.record)
                raise ApiError(400, 103, "failed to start tunnel", f"listen tcp 127.0.0.1: {e}") from e
            port = listener.getsockname()[1]
            self.control.remember_domain_port(domain, port)
        return listener, f"{scheme}{domain}:{port}"


# --------------------------------------------------------------------------- entry point


def open_log(target: str | None) -> TextIO | None:
    if target in (None, "false"):
        return None
    if target == "stdout":
        return sys.stdout
    if target == "stderr":
        return sys.stderr
    return open(str(target), "a", encoding="utf-8")


def start_command(args: list[str]) -> int:
    try:
        options = parse_start_options(args)
    except StartupError as e:
        print(f"ERROR:  {e}", file=sys.stderr)
        return 1
    control = ControlDir(default_control_dir())
    log = LogSink(open_log(options.log_target), json_format=options.log_format == "json")
    agent = Agent(control, log, options)
    log.on_broken_pipe = agent.stop_for_broken_pipe
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    return agent.run()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "help"
    if command in ("--version", "-v", "version"):
        print(f"ngrok version {current_version(ControlDir(default_control_dir()).read_control())}")
        return 0
    if command == "start":
        return start_command(args[1:])
    if command == "config":
        return config_command(args[1:])
    if command == "update":
        control = ControlDir(default_control_dir())
        values = control.read_control()
        if version_tuple(current_version(values)) >= version_tuple(LATEST_VERSION):
            print("No update available, this is the latest version.")
            return 0
        control.write_control({**values, "version": LATEST_VERSION})
        print(f"Update to {LATEST_VERSION} complete.")
        return 0
    if command in ("help", "--help", "-h"):
        print("NAME:\n  ngrok - fake ngrok v3 agent for tests\n\nCOMMANDS:\n  start --none, config, version")
        return 0
    print(f'ERROR:  unknown command "{command}" for "ngrok"', file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
