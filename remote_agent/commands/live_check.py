"""Check, with a real ngrok account, the behaviours of ngrok that remote-agent relies on.

Run by scripts/check-real-ngrok.sh: `python -m remote_agent.commands.live_check`. It opens a tunnel to a
tiny local page with the account's token (NGROK_AUTHTOKEN, from the environment or .env), and
prints what it finds:

- the agent is recent enough for pyngrok 9 (3.30.0 or newer);
- an endpoint opened without a URL gets the account's dev domain, and the local API's
  /api/status has region and latency per session leg;
- the local API reports the endpoint as it was opened (URL, upstream, traffic policy), which
  the keeper compares at each health check to notice an endpoint another process replaced;
- a cleanly stopped agent (SIGTERM) releases the URL at once: a new agent gets the same URL;
- after an agent is killed, how long the edge keeps its session (ERR_NGROK_334 meanwhile);
- whether the account's dev domain is held by a Cloud Endpoint ngrok created (some new
  accounts have one), and what the public URL answers, with ngrok's `ngrok-error-code` header.

It uses one agent at a time and stops each one; a tunnel that remote-agent's keeper runs
for the same account holds the same dev domain, so stop it first (`remote-agent stop --tunnel-only`).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from remote_agent.commands.status_live import agent_status, region_and_latency
from remote_agent.config.settings import resolve
from remote_agent.core import loopback
from remote_agent.core.errors import ExitCode, RemoteAgentError
from remote_agent.tunnel.agent import (
    MIN_AGENT_VERSION,
    Agent,
    AgentError,
    agent_version,
    default_binary,
    endpoint_difference,
    public_url_answers,
    too_old,
    version_text,
    write_agent_config,
)
from remote_agent.tunnel.edge_watch import ask, holder

STALE_WAIT_LIMIT = 120.0
DEV_DOMAIN_SUFFIXES = ("ngrok-free.dev", "ngrok-free.app", "ngrok.dev", "ngrok.app")


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"remote-agent live check\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _ignore(_line: Any) -> None:
    """The agent's log lines are not needed here."""


class Check:
    """Runs the steps; `found` collects one line per finding, `failed` the ones that broke a promise."""

    def __init__(self, ngrok_path: str, config: Path, port: int, token: str, say: Callable[[str], None]) -> None:
        self.ngrok_path = ngrok_path
        self.config = config
        self.port = port
        self.secrets = (token,)
        self.say = say
        self.failed: list[str] = []

    def agent(self) -> Agent:
        return Agent(self.ngrok_path, self.config, _ignore, self.secrets, startup_timeout=30)

    def report(self, ok: bool, text: str) -> None:
        self.say(f"{'ok ' if ok else 'BAD'}  {text}")
        if not ok:
            self.failed.append(text)

    def run(self) -> int:
        version = agent_version(self.ngrok_path)
        if version is None or too_old(version):
            shown = version_text(version) if version else "unknown"
            self.report(False, f"agent version {shown} at {self.ngrok_path} (needs {version_text(MIN_AGENT_VERSION)})")
            return 1
        self.report(True, f"agent version {version_text(version)} at {self.ngrok_path}")
        first = self.agent()
        # A free policy action, so that the agent has a policy to report back.
        policy = {
            "on_http_request": [
                {"actions": [{"type": "basic-auth", "config": {"credentials": [f"check:{secrets.token_hex(8)}"]}}]}
            ]
        }
        try:
            url = first.open(self.port, None, policy)
        except AgentError as e:
            first.stop()
            self.report_holder(e)
            return 1
        self.report(True, "the account's dev domain is free for an agent (no Cloud Endpoint holds it)")
        # A local stand-in for ngrok serves the same names under .localhost (loopback by RFC 6761).
        host = (urlsplit(url).hostname or "").removesuffix(".localhost")
        self.report(host.endswith(DEV_DOMAIN_SUFFIXES), f"an endpoint without a URL got {url} (the dev domain)")
        self.check_status(first)
        self.check_endpoint_report(first)
        self.report(public_url_answers(url, 10), f"{url} reaches this server")
        self.report_answer(url)
        first.stop()
        started = time.monotonic()
        second = self.agent()
        try:
            again = second.open(self.port, None, None)
        except AgentError as e:
            self.report(False, f"after a clean stop, a new agent was refused: {e}")
            return 1
        took = time.monotonic() - started
        self.report(again == url, f"after a clean stop, a new agent got {again} within {took:.1f} s")
        second.kill()  # abrupt, as a crash or a lost network would end it
        self.measure_stale_session(url)
        return 1 if self.failed else 0

    def report_holder(self, e: AgentError) -> None:
        """A first agent refused its dev domain: by a Cloud Endpoint ngrok created, or another agent?"""
        if e.code != "ERR_NGROK_334" or not e.refused_url:
            self.report(False, str(e))
            return
        found = holder(e.refused_url, 10)
        if found == "cloud_endpoint":
            self.report(
                False,
                f"the account's dev domain {e.refused_url} is held by a Cloud Endpoint ngrok created: "
                "delete it at https://dashboard.ngrok.com/endpoints",
            )
        else:
            self.report(
                False,
                f"the account's dev domain {e.refused_url} is served by another agent ({found}): stop it first",
            )

    def report_answer(self, url: str) -> None:
        """What visitors get, and ngrok's own code on it when ngrok answered instead of this server."""
        answer = ask(url, "GET", "/", 10)
        header = f"ngrok-error-code: {answer.code}" if answer.code else "no ngrok-error-code"
        self.report(answer.refusal is None, f"{url} answers HTTP {answer.status} ({header})")

    def check_status(self, agent: Agent) -> None:
        status = agent_status(loopback.port_of(agent.api_url), timeout=5)
        session = status.get("session")
        legs = session.get("legs") if isinstance(session, dict) else None
        leg = legs[0] if isinstance(legs, list) and legs and isinstance(legs[0], dict) else {}
        shaped = isinstance(leg.get("region"), str) and isinstance(leg.get("latency"), str)
        shown = region_and_latency(status) or "nothing"
        self.report(shaped, f"/api/status has session.legs[].region and .latency: {shown}")

    def check_endpoint_report(self, agent: Agent) -> None:
        listed = agent.endpoint_ok(5)
        changed = agent.changed_by_others() if listed else "the agent does not list it"
        self.report(
            listed is True and changed is None,
            "the local API reports the endpoint as it was opened (URL, upstream, traffic policy)"
            + (f": {changed}" if changed else ""),
        )
        worded = endpoint_difference(agent.expected, agent.seen) if agent.expected and agent.seen else None
        if listed and changed is None and worded:
            self.say(f"     (in its own words: {worded}; the keeper compares with the agent's first answer)")

    def measure_stale_session(self, url: str) -> None:
        """How long the edge keeps a killed agent's URL online: informative, not a promise."""
        killed = time.monotonic()
        refusals = 0
        while time.monotonic() - killed < STALE_WAIT_LIMIT:
            agent = self.agent()
            try:
                got = agent.open(self.port, None, None)
            except AgentError as e:
                agent.stop()
                if e.code != "ERR_NGROK_334":
                    self.report(False, f"after a killed agent, a new one was refused: {e}")
                    return
                refusals += 1
                time.sleep(1)
                continue
            held = time.monotonic() - killed
            agent.stop()
            self.say(
                f"     after an agent was killed, the edge held {url} for about {held:.0f} s "
                f"({refusals} refusals with ERR_NGROK_334); then a new agent got {got}"
            )
            return
        self.report(False, f"the edge still held {url} {STALE_WAIT_LIMIT:.0f} s after its agent was killed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(say: Callable[[str], None] = print) -> int:
    settings = resolve({}, os.environ)
    token = settings.ngrok_authtoken
    if not token:
        say("NGROK_AUTHTOKEN is not set (environment or .env): this check needs a real ngrok account.")
        return 2
    ngrok_path = settings.ngrok_path or default_binary()
    if not os.path.isfile(ngrok_path):
        say(f"There is no ngrok agent at {ngrok_path}: run `remote-agent serve` once, or set PYNGROK_NGROK_PATH.")
        return 4
    page = ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="remote-agent-check-") as directory:
        config = Path(directory) / "ngrok.yml"
        write_agent_config(config, token)
        try:
            code = Check(ngrok_path, config, page.server_address[1], token, say).run()
        except (AgentError, RemoteAgentError) as e:
            say(f"BAD  {e}")
            code = 1
        finally:
            page.shutdown()
    say("All behaviours remote-agent relies on hold." if code == 0 else "Some behaviours differ: see BAD above.")
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
