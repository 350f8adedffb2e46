"""The agent process's life as the keeper drives it: through pyngrok, against the fake agent binary.

The fake agent stands in for ngrok's binary, which needs the ngrok cloud; pyngrok and the
processes are real.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TOKEN, pid_alive, wait_until
from fakeagent import FakeNgrok

from remote_agent.tunnel.agent import Agent, AgentError, write_agent_config


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNgrok]:
    f = FakeNgrok(tmp_path / "ngrok")
    yield f
    f.kill_all()


def make_agent(fake: FakeNgrok, tmp_path: Path, spawned: list[int], startup_timeout: float = 20.0) -> Agent:
    config = tmp_path / "ngrok.yml"
    write_agent_config(config, TOKEN)
    return Agent(str(fake.path), config, lambda line: None, (TOKEN,), startup_timeout, on_spawn=spawned.append)


def test_a_silent_agent_is_known_at_once_then_killed_and_reaped(fake: FakeNgrok, tmp_path: Path) -> None:
    from pyngrok import process

    fake.set_control(silent=True)
    spawned: list[int] = []
    agent = make_agent(fake, tmp_path, spawned, startup_timeout=1.0)
    with pytest.raises(AgentError, match="did not start within 1 s"):
        agent.open(9, None, None)
    assert len(spawned) == 1, "the agent's pid is reported while it starts"
    assert not pid_alive(spawned[0])
    assert not zombie(spawned[0]), "the killed agent was not reaped"
    assert str(fake.path) not in process._current_processes, "pyngrok still records the dead agent"
    # pyngrok's lock is free again: a normal start works in the same process.
    fake.set_control(silent=None)
    agent = make_agent(fake, tmp_path, spawned)
    assert agent.open(9, None, None).startswith("http://")
    agent.kill()


def test_a_silent_start_ends_when_the_keeper_stops(fake: FakeNgrok, tmp_path: Path) -> None:
    fake.set_control(silent=True)
    spawned: list[int] = []
    agent = make_agent(fake, tmp_path, spawned)
    stop = threading.Event()

    def stop_once_spawned() -> None:
        wait_until(lambda: spawned, 30, "the agent")
        stop.set()

    threading.Thread(target=stop_once_spawned, daemon=True).start()
    with pytest.raises(AgentError, match="stopping"):
        agent.open(9, None, None, cancelled=stop.is_set)
    # Well before the 20 s start-up deadline.
    assert not pid_alive(spawned[0])


def test_polite_stop_lets_the_agent_close_its_session(fake: FakeNgrok, tmp_path: Path) -> None:
    spawned: list[int] = []
    agent = make_agent(fake, tmp_path, spawned)
    agent.open(9, None, None)
    assert agent.endpoint_ok(5) is True, "the keeper's health check can reach the agent's API"
    pid = spawned[0]
    agent.stop(grace=30.0)
    assert not pid_alive(pid)
    assert not zombie(pid)
    exits = [e for e in fake.events() if e["event"] == "exited" and e["pid"] == pid]
    assert [e["reason"] for e in exits] == ["signal"], "the agent was killed instead of stopped"
