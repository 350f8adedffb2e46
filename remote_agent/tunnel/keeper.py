"""The tunnel keeper: `python -m remote_agent.tunnel.keeper`, run by serve in the session's tunnel window.

It owns the ngrok agent, keeps the endpoint to Jupyter open, and records what it knows
in the tunnel state file, the one thing `serve`, `status` and `url` read. It wakes when
the agent exits or logs something that matters, and otherwise checks the agent's local
API about once a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import logging.handlers
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from remote_agent.core import edge_secret, procs, times
from remote_agent.core.build import code_build
from remote_agent.core.home import Home
from remote_agent.core.redaction import RedactingFilter
from remote_agent.core.store import append_private
from remote_agent.core.times import now_iso
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.agent import (
    Agent,
    AgentError,
    AgentNoiseFilter,
    agent_version,
    default_binary,
    fatal_hint,
    is_our_agent,
    too_old,
    update_hint,
    version_text,
)
from remote_agent.tunnel.edge_watch import EdgeAnswer, EdgeWatch, ask, describe
from remote_agent.tunnel.keeper_config import KeeperConfig
from remote_agent.tunnel.notify import Notifier
from remote_agent.tunnel.state import TunnelState

log = logging.getLogger("remote_agent.tunnel.keeper")

# How often the agent's local API is asked whether the endpoint is there as set. An agent that
# exits wakes the keeper at once; this catches one that hangs or an endpoint changed by another
# process. Each question costs the agent two log lines that pyngrok parses: every 1.5 s keeps
# the keeper under 0.1 % of a core at rest, and a hung agent replaced within about 4 s.
CHECK_INTERVAL = 1.5
PROBE_TIMEOUT = 1.0
PROBE_FAILURES_BEFORE_REPLACE = 2
PUBLIC_PROBE_TIMEOUT = 1.5
# The agent reconnects by itself after a network blip and keeps its URL; give it this long.
RECONNECT_GRACE = 60.0
# The agent gets this long to close its session at ngrok's edge before it is killed.
AGENT_STOP_GRACE = 3.0
SHORT_BACKOFF = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
LONG_BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0)
# ERR_NGROK_334 for a URL this keeper served this recently is our own old session, which the
# edge keeps online until it notices the agent is gone: try again this often until it lets go.
OWN_SESSION_WINDOW = 90.0
OWN_SESSION_RETRY = 1.0
UNRESPONSIVE = "the ngrok agent stopped answering"
WAITING_FOR_RELEASE = "waiting for ngrok to release the old session of this server's agent (ERR_NGROK_334)"


class Backoff:
    """Delays that grow to a cap, with jitter on the long ones so agents do not retry in step."""

    def __init__(self, steps: tuple[float, ...], jitter: float = 0.0) -> None:
        self.steps = steps
        self.jitter = jitter
        self.attempt = 0

    def next(self) -> float:
        delay = self.steps[min(self.attempt, len(self.steps) - 1)]
        self.attempt += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))  # noqa: S311 (jitter, not security)

    def reset(self) -> None:
        self.attempt = 0


def token_from_agent_config(path: Path) -> str | None:
    """The authtoken, read only so that ngrok's messages quoting it can be masked."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.strip().partition(":")
            if key == "authtoken":
                return value.strip().strip('"') or None
    except OSError:
        return None
    return None


class Keeper:
    def __init__(
        self,
        home: Home,
        config: KeeperConfig,
        make_agent: Callable[..., Agent] = Agent,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float], object] = threading.Event.wait,
    ) -> None:
        self.home = home
        self.config = config
        self.clock = clock
        self.wait = wait  # a test gives a fake clock and a wait that advances it
        basic_password = config.basic_auth.partition(":")[2] if config.basic_auth else None
        self.secrets = (
            token_from_agent_config(home.ngrok_config),
            config.basic_auth,
            basic_password,
            config.edge_secret,
        )
        self.make_agent = make_agent
        self.ngrok_path = config.ngrok_path or default_binary()
        self.wake = threading.Event()
        self.stopping = False
        self.agent_hung = False
        self.reconnecting_since: float | None = None
        self.written: tuple[int, int] | None = None
        self.state = TunnelState(
            provider="ngrok", status="starting", keeper_pid=os.getpid(), port=config.port, keeper_build=code_build()
        )
        self.short = Backoff(SHORT_BACKOFF)
        self.long = Backoff(LONG_BACKOFF, jitter=0.2)
        self.notifier = Notifier(config.on_url_change, config.webhook, self.secrets)
        # The URL our agent served and when it last did (clock time): tells our own stale session
        # (ERR_NGROK_334 for it, retried quickly) from another agent's (fatal).
        self.served_url: str | None = None
        self.served_at: float | None = None
        self.edge = EdgeWatch(clock, config.login_rate)  # what ngrok's edge answers visitors

    def note_serving(self) -> None:
        if self.state.status == "up" and self.state.public_url:
            self.served_url, self.served_at = self.state.public_url, self.clock()

    def own_stale_session(self, e: AgentError) -> bool:
        """Whether a 334 is for the URL this keeper served within OWN_SESSION_WINDOW seconds."""
        if self.served_url is None or self.served_at is None:
            return False
        if self.clock() - self.served_at > OWN_SESSION_WINDOW:
            return False
        refused = e.refused_url or (f"https://{self.config.domain}" if self.config.domain else None)
        return refused is None or same_host(refused, self.served_url)

    # -- what the agent says, on pyngrok's monitor thread: keep it quick
    def on_agent_log(self, line: Any) -> None:
        msg = getattr(line, "msg", None) or ""
        if "failed to reconnect session" in msg:
            if self.reconnecting_since is None:
                self.reconnecting_since = self.clock()
                self.wake.set()
        elif "client session established" in msg and self.reconnecting_since is not None:
            self.reconnecting_since = None
            self.wake.set()

    def save(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        try:
            tunnel_state.write(self.home, self.state)
            self.written = self.state_file_identity()
        except Exception as e:  # a full disk must not stop the tunnel itself
            log.error("could not record the tunnel state: %s", e)
            self.written = None

    def state_file_identity(self) -> tuple[int, int] | None:
        try:
            st = self.home.tunnel_state.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def restore_state_file(self) -> None:
        """Rewrite the state file if someone removed, replaced or corrupted it: one stat a second."""
        if self.state_file_identity() != self.written:
            log.warning("the tunnel state file changed under the keeper; writing it again")
            self.save()

    def stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        # The flag first: whoever wakes from the event checks it, so no stop is ever lost.
        self.stopping = True
        self.wake.set()

    def on_agent_spawned(self, pid: int) -> None:
        """Recorded at once, so that `stop` can end an agent that never finished starting."""
        self.save(agent_pid=pid)

    def kill_leftover_agent(self) -> None:
        """An agent left by a keeper that was killed would hold the account's one session."""
        previous = tunnel_state.read(self.home)
        pid = previous.agent_pid if previous else None
        if pid and procs.is_alive(pid) and is_our_agent(pid, self.home.ngrok_config):
            log.info("stopping the agent left by the previous keeper (pid %s)", pid)
            procs.terminate(pid, 2)
        # The previous keeper (killed, or restarted by serve) may have served its URL just now.
        recent = previous is not None and previous_age(previous.updated_at) < OWN_SESSION_WINDOW
        if previous is not None and recent and previous.status in ("up", "down", "reconnecting"):
            self.served_url, self.served_at = previous.last_url, self.clock()
        if previous is not None:
            self.state.reopened = previous.reopened if previous.status != "stopped" else 0
            self.state.last_url = previous.last_url or previous.public_url
            if previous.status != "stopped":
                self.state.url_changes, self.state.reopen_reasons = previous.url_changes, previous.reopen_reasons

    def pause(self, seconds: float, wake_on_news: bool = True) -> None:
        """Wait `seconds`, or less when stopping (or, with `wake_on_news`, when the agent says something).

        `stopping` is checked before and after every wait, so a stop that arrives at any
        moment ends the pause; news from the agent can only cut short a health-check pause.
        """
        deadline = self.clock() + seconds
        while not self.stopping:
            left = deadline - self.clock()
            if left <= 0:
                return
            self.wait(self.wake, left)
            woken = self.wake.is_set()
            self.wake.clear()
            if woken and wake_on_news:
                return

    def agent_is_current(self) -> bool:
        """An agent older than 3.30 never becomes healthy for pyngrok: stop and say how to update it."""
        version = agent_version(self.ngrok_path)
        if version is None or not too_old(version):
            return True
        message = f"The ngrok agent at {self.ngrok_path} is version {version_text(version)}, too old for remote-agent."
        hint = update_hint(self.config.ngrok_path)
        log.error("%s %s The keeper stops.", message, hint)
        self.save(status="fatal", public_url=None, agent_pid=None, last_error=f"{message} {hint}")
        self.stopping = True
        return False

    def open_tunnel(self) -> Agent | None:
        agent = self.make_agent(
            self.ngrok_path, self.home.ngrok_config, self.on_agent_log, self.secrets, on_spawn=self.on_agent_spawned
        )
        try:
            url = agent.open(
                self.config.port, self.config.domain, self.config.traffic_policy(), cancelled=lambda: self.stopping
            )
        except AgentError as e:
            agent.stop(grace=0.0 if self.stopping else AGENT_STOP_GRACE)
            if self.stopping:
                return None
            self.handle_refusal(e)
            return None
        previous = self.state.public_url or self.state.last_url
        is_reopen = self.state.status not in ("starting",)
        reopened = self.state.reopened + (1 if is_reopen else 0)
        reasons = self.state.reopen_reasons
        if is_reopen:
            reasons = count_reason(reasons, self.state.last_error)
        changes = self.state.url_changes + (1 if is_reopen and previous and previous != url else 0)
        self.save(
            status="up",
            public_url=url,
            since=now_iso(),
            agent_pid=agent.pid,
            reopened=reopened,
            api_url=agent.api_url,
            last_url=url,
            url_changes=changes,
            reopen_reasons=reasons,
        )
        log.info("tunnel open: %s -> 127.0.0.1:%s", url, self.config.port)
        if previous and previous != url:
            log.info("the public URL changed: %s (was %s)", url, previous)
        if previous != url:
            self.notifier.url_changed(url, previous)  # queued: the hooks run on their own thread
        self.short.reset()
        self.long.reset()
        self.reconnecting_since = None
        self.note_serving()
        self.edge.opened()
        threading.Thread(target=self.watch_exit, args=(agent,), daemon=True).start()
        return agent

    def watch_exit(self, agent: Agent) -> None:
        agent.wait_exit()
        self.wake.set()

    def handle_refusal(self, e: AgentError) -> None:
        # What the failed agent logged on its way out must not cut the wait short (pause ignores it).
        self.reconnecting_since = None
        message = e.explain()
        hint = fatal_hint(e.code, self.config.ngrok_path, dev_domain=self.config.domain is None)
        if e.code == "ERR_NGROK_334" and self.own_stale_session(e):
            if self.state.last_error != WAITING_FOR_RELEASE:
                log.warning(
                    "ngrok still holds %s for this server's previous agent; retrying every second", e.refused_url
                )
            self.save(status="down", public_url=None, agent_pid=None, last_error=WAITING_FOR_RELEASE)
            self.pause(OWN_SESSION_RETRY)
        elif e.kind == "fatal" or e.code == "ERR_NGROK_334":
            # 334 for a URL we did not just serve: another agent (often another server on the same
            # account, which shares its one dev domain). Never take it over when that agent restarts.
            log.error("%s %s The keeper stops.", message, hint)
            self.save(status="fatal", public_url=None, agent_pid=None, last_error=f"{message} {hint}".strip())
            self.stopping = True
        elif e.kind == "conflict":
            delay = self.long.next()
            log.warning("%s %s Trying again in %.0f s.", message, hint, delay)
            self.save(status="blocked", public_url=None, agent_pid=None, last_error=f"{message} {hint}".strip())
            self.pause(delay, wake_on_news=False)
        else:
            delay = self.short.next()
            log.warning("%s; trying again in %.1f s", message, delay)
            self.save(status="down", public_url=None, agent_pid=None, last_error=message)
            self.pause(delay, wake_on_news=False)

    def check(self, agent: Agent, failures: int) -> tuple[bool, int]:
        """One health check: (keep this agent?, consecutive probe failures)."""
        self.agent_hung = False
        if not agent.alive():
            return self.exited(agent)
        if self.reconnecting_since is not None:
            waited = self.clock() - self.reconnecting_since
            if waited < RECONNECT_GRACE:
                if self.state.status != "reconnecting":
                    log.warning("the agent lost its connection to ngrok and is reconnecting; waiting")
                    self.save(status="reconnecting", last_error="the agent is reconnecting to ngrok")
                return True, 0
            log.warning("the agent has been reconnecting for %.0f s; replacing it", waited)
            return False, 0
        ok = agent.endpoint_ok(PROBE_TIMEOUT)
        if ok and self.endpoint_changed_by_others(agent):
            return False, 0
        if ok:
            if self.state.status != "up":
                self.save(status="up")
            return True, 0
        if ok is False:
            log.warning("the agent no longer lists the endpoint; reopening")
            self.save(status="down", last_error="the endpoint disappeared")
            return False, 0
        # The local API did not answer: is the tunnel itself still carrying traffic?
        failures += 1
        url = self.state.public_url
        patience = PROBE_FAILURES_BEFORE_REPLACE * 3
        if url and failures < patience and self.public_answer(url).reaches_agent:
            return True, failures
        if not agent.alive():  # it died while it was being asked: that is why it did not answer
            return self.exited(agent)
        log.warning("the agent has stopped answering (its API and the public URL); replacing it")
        self.save(status="down", last_error=UNRESPONSIVE)
        self.agent_hung = True  # no polite stop: it would not answer that either
        return False, 0

    def exited(self, agent: Agent) -> tuple[bool, int]:
        log.warning("the ngrok agent (pid %s) exited; reopening the tunnel", agent.pid)
        self.save(status="down", last_error="the ngrok agent exited", agent_pid=None)
        return False, 0

    def public_answer(self, url: str) -> EdgeAnswer:
        """What the public URL answers; an answer with ngrok's refusal in it is recorded too."""
        answer = ask(url, timeout=PUBLIC_PROBE_TIMEOUT)
        if answer.status is not None:
            self.note_edge(answer.refusal)
        return answer

    def watch_edge(self) -> None:
        """Now and then, ask the public URL as a visitor would: ngrok may refuse visitors while the agent is fine."""
        url = self.state.public_url
        if self.state.status != "up" or not url or not self.edge.due():
            return
        answered, refusal = self.edge.probe(url)
        if answered:
            self.note_edge(refusal)

    def note_edge(self, refusal: str | None) -> None:
        """Record ngrok's refusal of visitors (status exits 3, serve says it), or that it has cleared."""
        current = self.state.edge_refused
        if refusal is not None and (current is None or current.get("code") != refusal):
            message = describe(refusal)
            log.warning("%s", message)
            self.save(edge_refused={"code": refusal, "message": message, "at": now_iso()}, last_error=message)
        elif refusal is None and current is not None:
            log.info("ngrok's edge serves visitors of the public URL again (%s has cleared)", current.get("code"))
            cleared = None if self.state.last_error == current.get("message") else self.state.last_error
            self.save(edge_refused=None, last_error=cleared)

    def endpoint_changed_by_others(self, agent: Agent) -> bool:
        """Any local process can change the endpoint through the agent's unauthenticated local API:
        on any difference from what the keeper set, say so and have the tunnel reopened as set."""
        changed = agent.changed_by_others()
        if changed is None:
            return False
        reason = f"another local process changed the endpoint through the ngrok agent's local API: {changed}"
        log.warning("%s; reopening it with remote-agent's settings", reason)
        self.save(status="down", last_error=reason)
        return True

    def run(self) -> int:
        """Keep the tunnel open until stopped: 0 when stopped or refused for good, 1 after a crash."""
        agent: Agent | None = None
        try:
            self.kill_leftover_agent()
            self.save()
            if not self.agent_is_current():
                return 0
            failures = 0
            while not self.stopping:
                if agent is None:
                    agent = self.open_tunnel()
                    continue
                self.pause(CHECK_INTERVAL)
                if self.stopping:
                    break
                keep, failures = self.check(agent, failures)
                if keep:
                    self.note_serving()
                    self.watch_edge()
                self.restore_state_file()
                if not keep:
                    agent.stop(grace=0.0 if self.agent_hung else AGENT_STOP_GRACE)
                    agent = None
        except Exception as e:
            # A bug: say so where status and serve look, with the traceback in keeper.log;
            # the session's supervisor starts a new keeper.
            log.exception("the keeper crashed")
            if agent is not None:
                agent.kill()
            self.save(status="crashed", public_url=None, agent_pid=None, last_error=f"the keeper crashed: {e!r}"[:300])
            return 1
        if agent is not None:
            agent.stop(grace=AGENT_STOP_GRACE)
        if self.state.status != "fatal":
            self.save(status="stopped", public_url=None, agent_pid=None)
        log.info("keeper stopped")
        return 0


def same_host(a: str, b: str) -> bool:
    return urlsplit(a).hostname == urlsplit(b).hostname


def previous_age(updated_at: str | None) -> float:
    """Seconds since a state file's `updated_at`; infinite when unknown."""
    age = times.age_seconds(updated_at)
    return float("inf") if age is None else age


def count_reason(reasons: dict[str, int], reason: str | None, keep: int = 8) -> dict[str, int]:
    """Tally why the tunnel was reopened; the rarest reasons go once there are too many kinds."""
    counted = dict(reasons)
    key = reason or "unknown"
    counted[key] = counted.get(key, 0) + 1
    while len(counted) > keep:
        counted.pop(min((k for k in counted if k != key), key=lambda k: counted[k]))
    return counted


def setup_logging(home: Home, secrets: tuple[str | None, ...]) -> None:
    redacting = RedactingFilter(secrets)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(home.keeper_log, maxBytes=5_000_000, backupCount=1),
        logging.StreamHandler(sys.stdout),
    ]
    quiet = AgentNoiseFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(quiet)
        handler.addFilter(redacting)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(logging.INFO)
    os.chmod(home.keeper_log, 0o600)


def main() -> int:
    os.umask(0o077)  # everything the keeper writes (state, logs, rotated logs) is private
    home = Home(Path(os.environ["REMOTE_AGENT_HOME"])).ensure()
    config = KeeperConfig.load(home.keeper_config)
    if config is None:
        print(f"remote-agent keeper: {home.keeper_config} is missing or corrupt; run serve again.", file=sys.stderr)
        return 2
    # A new proof for the edge to add to each request, and the end of the previous keeper's.
    proof = edge_secret.create(home.root)
    config = dataclasses.replace(config, edge_secret=proof)
    try:
        keeper = Keeper(home, config)
        setup_logging(home, (*keeper.secrets, proof))
    except Exception as e:
        record_crash(home, e)
        raise
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, keeper.stop)
    log.info("keeper started (pid %s), tunnel to 127.0.0.1:%s", os.getpid(), config.port)
    try:
        return keeper.run()
    finally:
        edge_secret.remove(home.root, proof)  # no keeper, no tunnel: no forwarded address is believed


def record_crash(home: Home, error: Exception) -> None:
    """A keeper that fails before its log is set up still leaves its traceback and a 'crashed' record."""
    import traceback

    with contextlib.suppress(Exception):
        append_private(home.keeper_log, f"{now_iso()} ERROR the keeper crashed\n{traceback.format_exc()}")
        state = tunnel_state.read(home) or TunnelState()
        state.status, state.keeper_pid, state.public_url = "crashed", os.getpid(), None
        state.last_error = f"the keeper crashed: {error!r}"[:300]
        tunnel_state.write(home, state)


if __name__ == "__main__":
    raise SystemExit(main())
