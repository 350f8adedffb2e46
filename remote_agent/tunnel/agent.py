"""The ngrok agent, driven through pyngrok; the only module that imports pyngrok.

The authtoken lives in the agent's own 0600 config file, never on its command line
(where /proc/PID/cmdline shows it to every local user) nor in its environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_agent.core import loopback, procs
from remote_agent.core.errors import MissingPrerequisite
from remote_agent.core.redaction import redact
from remote_agent.core.store import write_private
from remote_agent.tunnel.edge_watch import ask

TUNNEL_NAME = "remote-agent"
# pyngrok 9 checks the agent's health on /api/endpoints, which exists from agent 3.30.0 on.
MIN_AGENT_VERSION = (3, 30, 0)
TOKEN_PAGE = "https://dashboard.ngrok.com/get-started/your-authtoken"  # noqa: S105 (a web page, not a secret)
SPAWN_POLL = 0.05
# A polite stop: the agent closes its session at ngrok's edge, so a new agent can take the URL at once.
STOP_GRACE = 3.0

# What each ngrok code means (checked against ngrok's error pages, 2025-2026).
# Fatal: retrying cannot help until the user changes something.
FATAL_CODES = {
    "ERR_NGROK_105": "the authtoken is not valid",
    "ERR_NGROK_107": "the authtoken was revoked or reset",
    "ERR_NGROK_4018": "ngrok needs a verified account and its authtoken",
    "ERR_NGROK_120": "this ngrok agent version is no longer supported",
    "ERR_NGROK_121": "this ngrok agent is older than the minimum version for the account",
    "ERR_NGROK_725": "the account reached its monthly bandwidth limit",
    "ERR_NGROK_727": "the account reached its monthly limit of HTTP requests",
    "ERR_NGROK_4026": "the account has no credit for a paid traffic-policy action (the login rate limit)",
    # Permanent: the same request is refused again until the plan or the settings change.
    "ERR_NGROK_313": "a domain of your own (NGROK_DOMAIN) needs a paid ngrok plan",
    "ERR_NGROK_15002": "ngrok could not register the domain for this account",
    "ERR_NGROK_15013": "ngrok could not register the domain for this account",
    "ERR_NGROK_2201": "ngrok does not accept the traffic policy remote-agent asked for",
}
# ngrok's own words say more than our summary for these: they are quoted (secrets removed).
QUOTED_CODES = {"ERR_NGROK_313", "ERR_NGROK_15002", "ERR_NGROK_15013", "ERR_NGROK_2201"}
# Traffic-policy errors ngrok reports in the 22xx range besides 2201: invalid, never retried.
POLICY_CODE = re.compile(r"ERR_NGROK_22\d\d")
# Someone else holds what we asked for: never kill them (keeper.py decides what to do).
CONFLICT_CODES = {
    "ERR_NGROK_108": "another ngrok agent on this account holds its last agent session",
    "ERR_NGROK_334": "the URL is already online in another ngrok agent",
}
# Everything else is retried with a short backoff, e.g. ERR_NGROK_734 (request rate limit,
# resets within a minute) and ERR_NGROK_3200 (endpoint offline).
UPDATE_COMMAND = "remote-agent doctor --update-agent"


def fatal_hint(code: str | None, ngrok_path: str | None = None, dev_domain: bool = False) -> str:
    """What the user does about a refusal; `ngrok_path` is the binary they named, if any;
    `dev_domain`: the endpoint asked for the account's dev domain (no NGROK_DOMAIN)."""
    if code in ("ERR_NGROK_120", "ERR_NGROK_121"):
        return update_hint(ngrok_path)
    if code == "ERR_NGROK_334" and dev_domain:
        return DEV_DOMAIN_334_HINT
    return {
        "ERR_NGROK_105": f"Copy the token from {TOKEN_PAGE} into NGROK_AUTHTOKEN in .env, then run serve again.",
        "ERR_NGROK_107": f"Copy the current token from {TOKEN_PAGE} into NGROK_AUTHTOKEN in .env, "
        "then run serve again.",
        "ERR_NGROK_4018": "Verify your ngrok account and put its authtoken in NGROK_AUTHTOKEN, then run serve again.",
        "ERR_NGROK_725": "Wait for next month's quota or upgrade the ngrok plan; meanwhile use --tunnel ssh.",
        "ERR_NGROK_727": "Wait for next month's quota or upgrade the ngrok plan; meanwhile use --tunnel ssh.",
        "ERR_NGROK_4026": "Set NGROK_LOGIN_RATE_LIMIT=0 (Jupyter's own login slows down password guessing), "
        "or add credit to the ngrok account, then run serve again.",
        "ERR_NGROK_108": "Stop an agent you no longer need (https://dashboard.ngrok.com/agents lists them); "
        "the tunnel comes up by itself once one is gone.",
        "ERR_NGROK_334": "Stop the other agent, give this server a domain of its own with NGROK_DOMAIN, "
        "or use --tunnel ssh; then run serve again.",
        "ERR_NGROK_313": "Remove NGROK_DOMAIN to use the account's own dev domain (or upgrade the ngrok plan), "
        "then run serve again.",
        "ERR_NGROK_15002": "Check the domain on https://dashboard.ngrok.com/domains, or remove NGROK_DOMAIN; "
        "then run serve again.",
        "ERR_NGROK_15013": "Open https://dashboard.ngrok.com/domains to check the account's dev domain "
        "(or remove NGROK_DOMAIN), then run serve again.",
        "ERR_NGROK_2201": "Check NGROK_BASIC_AUTH, NGROK_OAUTH and NGROK_OAUTH_ALLOW_EMAILS in .env, "
        "then run serve again.",
    }.get(code or "", "")


# The dev domain: several agents of one account (or a Cloud Endpoint ngrok made) may ask for it.
DEV_DOMAIN_334_HINT = (
    "If another server or agent on this ngrok account serves it: Stop the other agent, give this server a "
    "domain of its own with NGROK_DOMAIN (paid plan), or use --tunnel ssh. If the account is new, ngrok may "
    "have created a Cloud Endpoint on its dev domain: delete it at https://dashboard.ngrok.com/endpoints. "
    "Then run serve again; `remote-agent doctor` tells which."
)


def update_hint(ngrok_path: str | None) -> str:
    """How to get a current agent: ours is updated by one command, the user's own binary by them."""
    if ngrok_path:
        return (
            f"Update the agent that PYNGROK_NGROK_PATH names: `{ngrok_path} update`, or install a current one "
            "from https://ngrok.com/download (or unset PYNGROK_NGROK_PATH to use remote-agent's own)."
        )
    return f"Update it: `{UPDATE_COMMAND}`, then run serve again."


@dataclass
class AgentError(Exception):
    """The agent refused or failed; `kind` says what the keeper should do about it."""

    message: str
    code: str | None = None

    @property
    def kind(self) -> str:
        if self.code in FATAL_CODES or (self.code is not None and POLICY_CODE.fullmatch(self.code)):
            return "fatal"
        if self.code in CONFLICT_CODES:
            return "conflict"
        return "retry"

    @property
    def refused_url(self) -> str | None:
        """The URL ngrok names in its refusal (ERR_NGROK_334 quotes it), if any."""
        match = re.search(r"'((?:https?|tcp)://[^'\s]+)'", self.message)
        return match[1] if match else None

    @property
    def ngrok_says(self) -> str:
        """ngrok's own words, without the error prefix and the code at the end."""
        text = re.sub(r"\s*ERR_NGROK_\d+\s*$", "", self.message)
        text = re.sub(r"^(?:failed to start tunnel|authentication failed|invalid traffic policy):\s*", "", text)
        return text.strip()

    def explain(self) -> str:
        reason = FATAL_CODES.get(self.code or "") or CONFLICT_CODES.get(self.code or "")
        if self.code == "ERR_NGROK_334" and self.refused_url:
            reason = f"{self.refused_url} is already online in another ngrok agent"
        if self.code == "ERR_NGROK_108":
            limit = re.search(r"[^.]*limited to [^.]*\.", self.message)
            reason = f"{reason}; ngrok says: {limit[0].strip() if limit else self.ngrok_says}"
        elif self.code in QUOTED_CODES or (self.code is not None and POLICY_CODE.fullmatch(self.code)):
            reason = f"{reason or 'ngrok refuses the tunnel for good'}; ngrok says: {self.ngrok_says}"
        if reason:
            return f"ngrok refused: {reason} ({self.code})."
        return f"ngrok failed: {self.message}"

    def __str__(self) -> str:
        return self.explain()


def parse_version(text: str) -> tuple[int, ...] | None:
    """(3, 30, 0) from `ngrok version 3.30.0`; None when there is no version in it."""
    match = re.search(r"version\s+(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(n or 0) for n in match.groups()) if match else None


def version_output(path: str) -> str:
    """What `path --version` prints (the one place the agent is asked); OSError when it does not run."""
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True, check=False, timeout=15).stdout
    except subprocess.SubprocessError as e:
        raise OSError(f"`{path} --version` did not answer: {e}") from e


def agent_version(path: str) -> tuple[int, ...] | None:
    """The version `path --version` reports; None when it does not run or says none."""
    try:
        return parse_version(version_output(path))
    except OSError:
        return None


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)


def too_old(version: tuple[int, ...] | None) -> bool:
    return version is not None and version < MIN_AGENT_VERSION


def update_agent(path: str, say: Callable[[str], None]) -> tuple[int, ...] | None:
    """Update pyngrok's own agent binary (`ngrok update`, else a fresh download); its version after."""
    from pyngrok import conf, ngrok
    from pyngrok.exception import PyngrokError

    before = agent_version(path) if os.path.isfile(path) else None
    if before is not None:
        say(f"The agent at {path} is version {version_text(before)}; updating it ...")
        with contextlib.suppress(PyngrokError, OSError, subprocess.SubprocessError):
            ngrok.update(conf.PyngrokConfig(ngrok_path=path, config_path=os.devnull))
    after = agent_version(path) if os.path.isfile(path) else None
    if after is None or too_old(after):
        say(f"Downloading a current ngrok agent to {path} ...")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        download(path, "Downloading the ngrok agent to {path} failed: {error}.", "")
        after = agent_version(path)
    return after


def download(path: str, failure: str, fallback: str) -> None:
    """pyngrok's download of the agent to `path`; a failure is a missing prerequisite, in words.

    `failure` is formatted with `path` and `error`; `fallback` is added to the fix.
    """
    from pyngrok import installer
    from pyngrok.exception import PyngrokError

    try:
        installer.install_ngrok(path)
    except (PyngrokError, OSError) as e:
        raise MissingPrerequisite(
            failure.format(path=path, error=e),
            f"Install ngrok (https://ngrok.com/download) and set PYNGROK_NGROK_PATH to it{fallback}.",
        ) from e


def default_binary() -> str:
    from pyngrok import conf

    return str(conf.DEFAULT_NGROK_PATH)


def write_agent_config(path: Path, authtoken: str) -> None:
    """The agent's config as serve writes it: the token and settings; the keeper adds the API's port."""
    lines = [
        'version: "3"',
        "agent:",
        f"  authtoken: {json.dumps(authtoken)}",
        "  update_check: false",
        # No traffic inspector: it would keep visitors' cookies and Jupyter's XSRF tokens in memory.
        "  inspect_db_size: -1",
        "",
    ]
    write_private(path, "\n".join(lines))


def free_loopback_port() -> int:
    """A port nothing listens on now; whether the agent itself takes port 0 is not known."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_config_path(base: Path) -> Path:
    """The config an agent of ours runs with, next to serve's: identifies our agents in /proc."""
    return base.with_name(base.stem + "-run" + base.suffix)


def write_run_config(base: Path) -> Path:
    """serve's config plus a free loopback port for the agent's local API (4040 may be another agent's)."""
    lines = base.read_text().splitlines()
    lines = [line for line in lines if not line.strip().startswith("web_addr:")]
    at = next((i + 1 for i, line in enumerate(lines) if line.strip() == "agent:"), len(lines))
    lines.insert(at, f"  web_addr: 127.0.0.1:{free_loopback_port()}")
    path = run_config_path(base)
    write_private(path, "\n".join(lines) + "\n")
    return path


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
    download(path, "The ngrok agent is not at {path}, and downloading it failed: {error}.", ", or use --tunnel ssh")


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
        found = re.findall(r"ERR_NGROK_\d+", text)
        code = found[-1] if found else None
    message = " ".join(redact(text, secrets).split())
    return AgentError(message[:500], code)


@dataclass(frozen=True)
class EndpointSettings:
    """What matters of an endpoint: where it is, where it forwards to, and the checks at the edge."""

    url: str | None
    upstream: tuple[str, str, int | None] | None  # (scheme, host, port)
    policy: Any  # the traffic policy as data; None when there is none

    @classmethod
    def of(cls, url: str | None, upstream: str | None, policy: Any) -> EndpointSettings:
        return cls((url or "").rstrip("/") or None, _upstream_address(upstream), _policy_data(policy))

    @classmethod
    def reported(cls, data: Mapping[str, Any]) -> EndpointSettings:
        """From the agent API's answer for one endpoint (`GET /api/endpoints/NAME`)."""
        upstream = data.get("upstream")
        upstream_url = upstream.get("url") if isinstance(upstream, Mapping) else None
        url = data.get("url") or data.get("public_url")
        return cls.of(
            str(url) if url else None, str(upstream_url) if upstream_url else None, data.get("traffic_policy")
        )


def _upstream_address(url: str | None) -> tuple[str, str, int | None] | None:
    from urllib.parse import urlsplit

    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _policy_data(policy: Any) -> Any:
    """A traffic policy as data, whether given as a mapping or as JSON/YAML text; None for none."""
    if isinstance(policy, str):
        text = policy.strip()
        if not text:
            return None
        try:
            policy = json.loads(text)
        except ValueError:
            import yaml  # pyngrok's own dependency

            try:
                policy = yaml.safe_load(text)
            except yaml.YAMLError:
                return text
    return policy or None


def _action_types(policy: Any) -> set[str]:
    """The kinds of actions in a policy (basic-auth, oauth, ...): what a message may name, never their config."""
    found: set[str] = set()
    if isinstance(policy, Mapping):
        if isinstance(policy.get("type"), str) and "config" in policy:
            found.add(policy["type"])
        for value in policy.values():
            found |= _action_types(value)
    elif isinstance(policy, list):
        for item in policy:
            found |= _action_types(item)
    return found


def endpoint_difference(expected: EndpointSettings, actual: EndpointSettings) -> str | None:
    """How `actual` differs from what was set, in words without secrets; None when it matches.

    The whole traffic policy is compared, whatever it holds; the words name only action types.
    """
    if actual.url != expected.url:
        return f"its URL is now {actual.url or 'none'} instead of {expected.url}"
    if actual.upstream != expected.upstream:
        _, host, port = actual.upstream or ("", "nowhere", None)
        _, want_host, want_port = expected.upstream or ("", "", None)
        return f"it forwards to {host}:{port} instead of Jupyter at {want_host}:{want_port}"
    if actual.policy != expected.policy:
        missing = sorted(_action_types(expected.policy) - _action_types(actual.policy))
        if actual.policy is None:
            return "its traffic policy was removed" + (f" (no {', '.join(missing)} any more)" if missing else "")
        if missing:
            return f"its traffic policy no longer has {', '.join(missing)}"
        return "its traffic policy is not the one remote-agent set"
    return None


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
        self.config_path = config_path
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
        # The endpoint as opened (what was asked, and the agent's first word on it) and as last seen.
        self.expected: EndpointSettings | None = None
        self.first_report: EndpointSettings | None = None
        self.seen: EndpointSettings | None = None

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

        # A fresh free port for the local API at each start, read back from the agent's log by pyngrok.
        self.config.config_path = str(write_run_config(self.config_path))
        options: dict[str, Any] = {}  # never pooling_enabled: a URL is never shared with another agent
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
                result["data"] = tunnel.data
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
        self.expected = EndpointSettings.of(self.public_url, f"http://127.0.0.1:{port}", traffic_policy)
        data = result.get("data")
        self.first_report = EndpointSettings.reported(data) if isinstance(data, Mapping) else None
        self.seen = None
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
        """True: the endpoint is listed. False: the agent answered without it. None: no answer.

        Asked every 1.5 s while the tunnel is up: one plain loopback request (core/loopback.py),
        not urllib, whose opener and proxy lookup cost more CPU than the answer.
        """
        port = loopback.port_of(self.api_url)
        answer = loopback.get(port, f"/api/endpoints/{TUNNEL_NAME}", timeout) if port else None
        if answer is None:
            return None
        status, body = answer
        if status == 404 or 200 < status < 300:
            return False
        if status != 200:
            return None
        with contextlib.suppress(ValueError, AttributeError):
            self.seen = EndpointSettings.reported(json.loads(body))
        return True

    def changed_by_others(self) -> str | None:
        """How the endpoint last seen differs from the one this agent opened; None when it does not.

        The agent's local API has no authentication: any local process can delete the endpoint
        and create another under the same name (without basic auth, or to its own upstream).
        The endpoint is compared with what was set; a difference in how the agent merely words
        it (its answer when the endpoint was opened, unchanged since) is not a change.
        """
        if self.expected is None or self.seen is None:
            return None
        difference = endpoint_difference(self.expected, self.seen)
        if difference and self.first_report is not None and self.seen == self.first_report:
            return None
        return difference

    def kill(self) -> None:
        """SIGKILL our agent by pid, reap it, and forget pyngrok's record of it (without pyngrok's lock)."""
        self.stop(grace=0.0)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """End the agent: SIGTERM so its session closes cleanly at ngrok's edge, SIGKILL after `grace` s.

        A killed agent's session and URL stay online at the edge until its heartbeat times
        out, and count against the account's agent limit meanwhile.
        """
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
    """True when the public URL reaches our agent: Jupyter's answer, or ngrok's 502 (ERR_NGROK_8012)
    when the agent is up but Jupyter is not. ngrok answers for an offline endpoint itself, with 404
    and `ngrok-error-code: ERR_NGROK_3200`: that is not alive.
    """
    return ask(url, timeout=timeout).reaches_agent


def is_our_agent(pid: int, config_path: Path) -> bool:
    """True when `pid` is an ngrok agent started with our config file: safe to kill."""
    argv = procs.cmdline(pid)
    return "start" in argv and (str(config_path) in argv or str(run_config_path(config_path)) in argv)


class AgentNoiseFilter(logging.Filter):
    """Drops the agent's line for each local API call (`msg=start pg=/api/...`, `msg=end ...`)
    and for each visitor's connection (`msg="join connections" ... r=<client ip:port>`).

    The real agent logs both at info and pyngrok passes each line on: with the keeper's check
    once a second that would be two lines a second in its log, plus a line, and an address,
    per visitor in keeper.log and the tunnel window.
    """

    NOISE = re.compile(r'\bmsg=(?:(?:start|end) pg=/api/|"join connections")')

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("pyngrok") and self.NOISE.search(record.getMessage()))
