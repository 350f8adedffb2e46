"""The ngrok agent, driven through pyngrok; the only module that imports pyngrok.

The authtoken lives in the agent's own 0600 config file, never on its command line
(where /proc/PID/cmdline shows it to every local user) nor in its environment.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_agent import procs
from remote_agent.errors import MissingPrerequisite
from remote_agent.redaction import redact
from remote_agent.state import write_private

TUNNEL_NAME = "remote-agent"
SPAWN_POLL = 0.05
# A polite stop: the agent closes its session at ngrok's edge, so a new agent can take the URL at once.
STOP_GRACE = 3.0

# Fatal: retrying cannot help until the user changes something.
FATAL_CODES = {
    "ERR_NGROK_105": "the authtoken is not valid",
    "ERR_NGROK_107": "the authtoken was revoked or reset",
    "ERR_NGROK_4018": "ngrok needs a verified account and its authtoken",
    "ERR_NGROK_120": "this ngrok agent is too old for the service",
    "ERR_NGROK_727": "the account reached its monthly limit",
}
# Someone else holds the account's agent session or the domain: wait for them, never kill them.
CONFLICT_CODES = {
    "ERR_NGROK_108": "another ngrok agent is already running on this account (the free plan allows one)",
    "ERR_NGROK_334": "the domain is already served by another ngrok agent",
}
FATAL_HINTS = {
    "ERR_NGROK_105": "Copy the token from https://dashboard.ngrok.com/get-started/your-authtoken into "
    "NGROK_AUTHTOKEN in .env, then run serve again.",
    "ERR_NGROK_107": "Copy the current token from https://dashboard.ngrok.com/get-started/your-authtoken "
    "into NGROK_AUTHTOKEN in .env, then run serve again.",
    "ERR_NGROK_4018": "Verify your ngrok account and put its authtoken in NGROK_AUTHTOKEN, then run serve again.",
    "ERR_NGROK_120": "Update the agent (`ngrok update`, or delete it so that serve downloads a current one).",
    "ERR_NGROK_727": "Wait for next month's quota or upgrade the ngrok plan; meanwhile use --tunnel ssh.",
    "ERR_NGROK_108": "Stop the other agent (on this or another machine: `pkill ngrok` there); the tunnel "
    "comes up by itself once it is gone.",
    "ERR_NGROK_334": "Stop the agent that serves this domain elsewhere, or unset NGROK_DOMAIN; the tunnel "
    "comes up by itself once the domain is free.",
}


@dataclass
class AgentError(Exception):
    """The agent refused or failed; `kind` says what the keeper should do about it."""

    message: str
    code: str | None = None

    @property
    def kind(self) -> str:
        if self.code in FATAL_CODES:
            return "fatal"
        if self.code in CONFLICT_CODES:
            return "conflict"
        return "retry"

    def explain(self) -> str:
        reason = FATAL_CODES.get(self.code or "") or CONFLICT_CODES.get(self.code or "")
        if reason:
            return f"ngrok refused: {reason} ({self.code})."
        return f"ngrok failed: {self.message}"

    def __str__(self) -> str:
        return self.explain()


def default_binary() -> str:
    from pyngrok import conf

    return str(conf.DEFAULT_NGROK_PATH)


def write_agent_config(path: Path, authtoken: str) -> None:
    """The agent's config: the token, and its local API on loopback (the default, made explicit)."""
    lines = [
        'version: "3"',
        "agent:",
        f"  authtoken: {json.dumps(authtoken)}",
        "  web_addr: 127.0.0.1:4040",
        "  update_check: false",
        # No traffic inspector: it would keep visitors' cookies and Jupyter's XSRF tokens in memory.
        "  inspect_db_size: -1",
        "",
    ]
    write_private(path, "\n".join(lines))


def ensure_binary(path: str, explicit: bool, say: Callable[[str], None]) -> None:
    """Make sure the agent binary exists; download it (as pyngrok does) only to pyngrok's default place."""
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return
    if explicit:
        raise MissingPrerequisite(
            f"PYNGROK_NGROK_PATH names {path}, which is not an executable file.",
            "Point it at the ngrok binary, or unset it so that serve downloads ngrok.",
        )
    say(f"Downloading the ngrok agent to {path} ...")
    from pyngrok import installer
    from pyngrok.exception import PyngrokError

    try:
        installer.install_ngrok(path)
    except (PyngrokError, OSError) as e:
        raise MissingPrerequisite(
            f"The ngrok agent is not at {path}, and downloading it failed: {e}.",
            "Install ngrok (https://ngrok.com/download) and set PYNGROK_NGROK_PATH to it, or use --tunnel ssh.",
        ) from e


def classify(error: BaseException, secrets: tuple[str | None, ...]) -> AgentError:
    """Turn a pyngrok exception into an AgentError with the ngrok code and no secrets."""
    code = getattr(error, "ngrok_error_code", None)
    text = str(getattr(error, "ngrok_error", None) or error)
    body = getattr(error, "body", None)
    if isinstance(body, str) and body:
        text = body
        with contextlib.suppress(ValueError, AttributeError):
            details = json.loads(body).get("details", {})
            text = details.get("err") or json.loads(body).get("msg") or body
    if code is None:
        for known in (*FATAL_CODES, *CONFLICT_CODES):
            if known in text:
                code = known
    message = " ".join(redact(text, secrets).split())
    return AgentError(message[:500], code)


class Agent:
    """One ngrok agent process with one HTTP endpoint to Jupyter."""

    def __init__(
        self,
        ngrok_path: str,
        config_path: Path,
        on_log: Callable[[Any], None],
        secrets: tuple[str | None, ...],
        startup_timeout: float = 20.0,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        from pyngrok import conf

        self.ngrok_path = ngrok_path
        self.secrets = secrets
        self.startup_timeout = startup_timeout
        self.config = conf.PyngrokConfig(
            ngrok_path=ngrok_path,
            config_path=str(config_path),
            auth_token=None,
            api_key=None,
            log_event_callback=on_log,
            monitor_thread=True,
            startup_timeout=int(startup_timeout),
            request_timeout=4.0,
        )
        # PyngrokConfig falls back to these variables and would put the token on argv.
        self.config.auth_token = None
        self.config.api_key = None
        self.api_url: str | None = None
        self.public_url: str | None = None
        self.on_spawn = on_spawn  # told the agent's pid the moment the process exists
        self._proc: Any = None

    @property
    def pid(self) -> int | None:
        return int(self._proc.pid) if self._proc is not None else None

    def open(
        self,
        port: int,
        domain: str | None,
        traffic_policy: dict[str, Any] | None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> str:
        """Start the agent and open the endpoint; never blocks past the startup deadline or a cancel."""
        from pyngrok import ngrok

        options: dict[str, Any] = {}
        if domain:
            options["url"] = f"https://{domain}"
        if traffic_policy:
            options["traffic_policy"] = json.dumps(traffic_policy)
        result: dict[str, Any] = {}
        self._forget_dead_record()

        def connect() -> None:
            try:
                tunnel = ngrok.connect(
                    f"http://127.0.0.1:{port}", "http", name=TUNNEL_NAME, pyngrok_config=self.config, **options
                )
                result["url"] = tunnel.public_url
            except BaseException as e:  # handed to the caller's thread
                result["error"] = e

        worker = threading.Thread(target=connect, name="ngrok-connect", daemon=True)
        worker.start()
        deadline = time.monotonic() + self.startup_timeout + 5
        while worker.is_alive() and time.monotonic() < deadline and not cancelled():
            worker.join(SPAWN_POLL)
            self._adopt_process()
        self._adopt_process()
        if worker.is_alive():
            # pyngrok reads the agent's output under its process lock and without a deadline: a
            # silent agent would hold both forever. Kill it by pid, which ends pyngrok's read too.
            self.kill()
            worker.join(5)
            if cancelled():
                raise AgentError("the keeper is stopping")
            raise AgentError(f"the agent did not start within {self.startup_timeout:.0f} s")
        if "error" in result:
            raise classify(result["error"], self.secrets)
        self.public_url = str(result["url"])
        return self.public_url

    def _adopt_process(self) -> None:
        """Take the process pyngrok records as soon as it exists (pyngrok notes it before its start wait)."""
        from pyngrok import process

        # A plain dict read: taking pyngrok's lock here would wait for the whole start.
        running = process._current_processes.get(self.ngrok_path)
        if running is None:
            return
        if running.proc is self._proc:
            self.api_url = running.api_url or self.api_url  # known once pyngrok has read the agent's log
            return
        if self._proc is not None and self._proc.poll() is None:
            return  # ours still runs; the record is someone else's (one agent per path per process)
        self._proc = running.proc
        self.api_url = running.api_url
        if self.on_spawn is not None:
            self.on_spawn(int(running.proc.pid))

    def _forget_dead_record(self) -> None:
        from pyngrok import process

        running = process._current_processes.get(self.ngrok_path)
        if running is not None and running.proc.poll() is not None:
            process._current_processes.pop(self.ngrok_path, None)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_exit(self) -> None:
        if self._proc is not None:
            self._proc.wait()

    def endpoint_ok(self, timeout: float) -> bool | None:
        """True: the endpoint is listed. False: the agent answered without it. None: no answer."""
        if not self.api_url:
            return None
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/endpoints/{TUNNEL_NAME}", timeout=timeout) as r:  # noqa: S310 (loopback API URL from the agent's own log)
                return bool(r.status == 200)
        except urllib.error.HTTPError as e:
            return False if e.code == 404 else None
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL our agent by pid, reap it, and forget pyngrok's record of it (without pyngrok's lock)."""
        self.stop(grace=0.0)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """End the agent: SIGTERM so its session closes cleanly at ngrok's edge, SIGKILL after `grace` s."""
        from pyngrok import process

        proc = self._proc
        if proc is not None and proc.poll() is None:
            if grace > 0:
                with contextlib.suppress(OSError):
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)  # reaped here, or by pyngrok's own poll: either way no zombie
        running = process._current_processes.get(self.ngrok_path)
        if running is not None and (proc is None or running.proc is proc):
            process._current_processes.pop(self.ngrok_path, None)
        self.api_url = None


def public_url_answers(url: str, timeout: float) -> bool:
    """True when a request through the public URL gets any HTTP answer (even ngrok's error page).

    Names under .localhost are loopback by RFC 6761: connect to 127.0.0.1 and send the
    name as the Host header, as a browser does.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    address = "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = connection_class(address, parts.port, timeout=timeout)
    try:
        conn.request("HEAD", "/api", headers={"Host": parts.netloc, "ngrok-skip-browser-warning": "1"})
        conn.getresponse().read(0)
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def is_our_agent(pid: int, config_path: Path) -> bool:
    """True when `pid` is an ngrok agent started with our config file: safe to kill."""
    argv = procs.cmdline(pid)
    return "start" in argv and str(config_path) in argv
