"""The keeper's decisions, with a scripted agent and a fake clock: no process, no real seconds.

The agent is faked here because what is tested is the keeper's loop (backoff, reconnect
grace, stops, crashes), and a real agent cannot be made to fail on cue at a fake time; the
real agent paths run in test_faults.py and test_supervision.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remote_agent.core.home import Home
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.agent import AgentError
from remote_agent.tunnel.keeper import LONG_BACKOFF, RECONNECT_GRACE, SHORT_BACKOFF, Keeper
from remote_agent.tunnel.keeper_config import KeeperConfig
from remote_agent.tunnel.state import TunnelState


class FakeTime:
    """A clock that moves only when the keeper waits; `at(t, action)` runs an action at fake time t."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.actions: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.actions.append((when, action))
        self.actions.sort(key=lambda a: a[0])

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if event.is_set():
            return True
        end = self.now + seconds
        if self.actions and self.actions[0][0] <= end:
            when, action = self.actions.pop(0)
            self.now = max(self.now, when)
            action()
            return event.is_set()
        self.now = end
        if self.now > 100_000:
            raise AssertionError("the keeper never stopped")
        return False


Step = str | AgentError | Callable[["FakeAgent"], str]


class FakeAgent:
    """What Agent does, scripted: each open() takes the next step (a URL, an error, or a function)."""

    def __init__(
        self, script: list[Step], spawned: list[FakeAgent], clock: Callable[[], float], *, on_log: Any, on_spawn: Any
    ) -> None:
        self.script = script
        self.clock = clock
        self.opened_at = -1.0
        self.on_log = on_log
        self.on_spawn = on_spawn
        self.pid = 1000 + len(spawned)
        self.api_url = "http://127.0.0.1:4040"
        self.running = False
        self.killed = False
        self.stopped_politely = False
        self.endpoint: Callable[[], bool | None] = lambda: True
        spawned.append(self)

    def open(self, port: int, domain: str | None, policy: Any, cancelled: Callable[[], bool] = lambda: False) -> str:
        self.running = True
        self.opened_at = self.clock()
        self.on_spawn(self.pid)
        step = self.script.pop(0)
        if callable(step) and not isinstance(step, AgentError):
            return step(self)
        if isinstance(step, AgentError):
            raise step
        return step

    def alive(self) -> bool:
        return self.running

    def endpoint_ok(self, timeout: float) -> bool | None:
        return self.endpoint()

    def changed_by_others(self) -> str | None:
        return None  # tampering through the agent's API is tested against the real keeper (test_local_attacker.py)

    def wait_exit(self) -> None:
        return None

    def kill(self) -> None:
        self.running, self.killed = False, True

    def stop(self, grace: float = 3.0) -> None:
        self.stopped_politely = grace > 0 and self.running
        self.running, self.killed = False, True


class Harness:
    def __init__(self, tmp_path: Path, script: list[Step]) -> None:
        self.home = Home(tmp_path / "state").ensure()
        self.time = FakeTime()
        self.agents: list[FakeAgent] = []
        self.recorded_agent_pids: list[int | None] = []
        config = KeeperConfig(port=8888, ngrok_path="/nonexistent/ngrok")

        def make_agent(*args: Any, on_spawn: Any) -> Any:  # a FakeAgent in the Agent's place
            return FakeAgent(script, self.agents, self.time.clock, on_log=args[2], on_spawn=on_spawn)

        self.keeper = Keeper(self.home, config, make_agent=make_agent, clock=self.time.clock, wait=self.time.wait)
        original_save = self.keeper.save

        def save(**changes: Any) -> None:
            original_save(**changes)
            self.recorded_agent_pids.append(tunnel_state.read(self.home).agent_pid)  # type: ignore[union-attr]

        self.keeper.save = save  # type: ignore[method-assign]

    def state(self) -> TunnelState:
        state = tunnel_state.read(self.home)
        assert state is not None
        return state


def retry(message: str = "connection refused") -> AgentError:
    return AgentError(message)


def test_failed_starts_back_off_then_the_tunnel_opens(tmp_path: Path) -> None:
    h = Harness(tmp_path, [retry(), retry(), retry(), "https://a.ngrok-free.dev"])
    h.time.at(100.0, h.keeper.stop)
    assert h.keeper.run() == 0
    # The first retry is at once, then the delays grow; no wait is cut short.
    opened = [a.opened_at for a in h.agents]
    gaps = [later - earlier for earlier, later in itertools.pairwise(opened)]
    assert gaps == list(SHORT_BACKOFF[:3])
    assert h.state().status == "stopped"
    assert h.state().last_url == "https://a.ngrok-free.dev"
    assert [a.killed for a in h.agents] == [True, True, True, True]
    assert h.agents[-1].stopped_politely, "a stopping keeper lets the agent close its session"


def test_agent_reconnecting_is_given_its_grace_then_replaced(tmp_path: Path) -> None:
    h = Harness(tmp_path, ["https://a.ngrok-free.dev", "https://a.ngrok-free.dev"])

    def outage_begins() -> None:
        h.agents[0].endpoint = lambda: None  # the local API still answers slowly or not at all
        h.agents[0].on_log(type("Line", (), {"msg": "failed to reconnect session"})())

    h.time.at(10.0, outage_begins)
    statuses: list[tuple[float, str]] = []
    h.time.at(10.0 + RECONNECT_GRACE / 2, lambda: statuses.append((h.time.now, h.state().status)))
    h.time.at(10.0 + RECONNECT_GRACE + 5, lambda: statuses.append((h.time.now, h.state().status)))
    h.time.at(10.0 + RECONNECT_GRACE + 10, h.keeper.stop)
    assert h.keeper.run() == 0
    assert statuses[0][1] == "reconnecting", "the agent is left alone while it reconnects"
    assert len(h.agents) == 2, "replaced once the grace ran out"
    assert statuses[1][1] == "up"
    assert h.state().reopened == 1


def test_stop_during_a_refusal_backoff_is_not_lost(tmp_path: Path) -> None:
    def refused_while_logging(agent: FakeAgent) -> str:
        # The failing agent's last words wake the keeper; they must neither end the backoff nor hide a stop.
        agent.on_log(type("Line", (), {"msg": "failed to reconnect session"})())
        raise AgentError("account limit", "ERR_NGROK_108")

    h = Harness(tmp_path, [refused_while_logging, refused_while_logging])
    stop_at = LONG_BACKOFF[0] * 1.2 + 1.0  # after the longest first delay (20 % jitter), within the second
    h.time.at(stop_at, h.keeper.stop)
    assert h.keeper.run() == 0
    assert h.time.now == stop_at, "the keeper slept on after the stop"
    assert len(h.agents) == 2
    assert h.agents[1].opened_at >= LONG_BACKOFF[0] * 0.8, "the agent's last words cut the backoff short"
    assert h.state().status == "stopped"


def test_stop_signal_just_before_a_backoff_ends_it_at_once(tmp_path: Path) -> None:
    def refused_and_stopped(agent: FakeAgent) -> str:
        h.keeper.stop()  # SIGTERM arrives while the refusal is being handled
        raise AgentError("account limit", "ERR_NGROK_108")

    h = Harness(tmp_path, [refused_and_stopped])
    assert h.keeper.run() == 0
    assert h.time.now == 0.0
    assert h.state().status == "stopped"


def test_silent_agent_is_recorded_at_once_killed_and_retried(tmp_path: Path) -> None:
    def silent(agent: FakeAgent) -> str:
        # Agent.open gives up on a silent agent after its deadline and kills it by pid.
        assert tunnel_state.read(h.home).agent_pid == agent.pid, "pid recorded while the agent starts"  # type: ignore[union-attr]
        agent.kill()
        raise AgentError("the agent did not start within 20 s")

    h = Harness(tmp_path, [silent, "https://a.ngrok-free.dev"])
    h.time.at(5.0, h.keeper.stop)
    assert h.keeper.run() == 0
    assert h.agents[0].killed
    assert h.state().agent_pid is None
    assert h.state().last_url == "https://a.ngrok-free.dev"


def test_stop_during_a_silent_start_returns_at_once(tmp_path: Path) -> None:
    def silent_until_cancelled(agent: FakeAgent) -> str:
        h.keeper.stop()
        agent.kill()
        raise AgentError("the keeper is stopping")

    h = Harness(tmp_path, [silent_until_cancelled])
    assert h.keeper.run() == 0
    assert h.state().status == "stopped"
    assert h.agents[0].killed
    assert len(h.agents) == 1, "no new agent after a stop"


def test_a_crash_is_recorded_as_such_with_its_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path, ["https://a.ngrok-free.dev"])

    def bug() -> bool | None:
        raise RuntimeError("a bug in the health check")

    h.time.at(3.0, lambda: setattr(h.agents[0], "endpoint", bug))
    with caplog.at_level(logging.ERROR):
        assert h.keeper.run() == 1
    state = h.state()
    assert state.status == "crashed"
    assert "a bug in the health check" in (state.last_error or "")
    assert state.agent_pid is None
    assert state.public_url is None
    assert h.agents[0].killed
    assert "Traceback" in caplog.text


def test_a_record_with_wrong_types_does_not_crash_a_new_keeper(tmp_path: Path) -> None:
    h = Harness(tmp_path, ["https://a.ngrok-free.dev"])
    damaged = {"version": 1, "status": "up", "reopened": "three", "agent_pid": "12", "reopen_reasons": [1]}
    h.home.tunnel_state.write_text(json.dumps(damaged))
    h.time.at(2.0, h.keeper.stop)
    assert h.keeper.run() == 0
    assert h.state().status == "stopped"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("reopened", "three", 0),
        ("reopened", True, 0),
        ("agent_pid", "12", None),
        ("agent_pid", 12, 12),
        ("public_url", 5, None),
        ("reopen_reasons", {"a": "b"}, {}),
        ("reopen_reasons", {"exited": 2}, {"exited": 2}),
        ("url_changes", None, 0),
    ],
)
def test_tunnel_record_fields_of_the_wrong_type_read_as_defaults(field: str, value: Any, expected: Any) -> None:
    state = TunnelState.from_dict({"version": 1, "status": "up", field: value})
    assert state is not None
    assert getattr(state, field) == expected
    assert state.status == "up"
