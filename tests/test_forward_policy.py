"""The forward's decisions with a fake clock: the gate time, the waits between reopens, waking up.

ssh and the probe are played by a scripted scene here (each forward lives and answers as
planned) so that minutes of drops run in microseconds; test_connect.py runs the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from remote_agent.core.errors import StartFailed
from remote_agent.laptop.forward import JUPYTER_GONE, PROBE_INTERVAL, Events, ForwardProcess, Holder
from remote_agent.laptop.forward_policy import GiveUp, ReconnectPolicy, Retry
from remote_agent.laptop.ssh_client import SshTarget


@dataclass
class Plan:
    """How one forward behaves: when its ssh exits (seconds after it opened) and whether it answers."""

    exits_after: float | None = None
    answers: bool = True
    dies_after: float | None = None  # stops answering then, while its ssh lives on (a dead connection)
    jupyter_gone_after: float | None = None  # the server refuses to connect on: Jupyter is not running
    reason: str = "Connection reset by peer"


@dataclass
class FakeForward:
    scene: Scene
    plan: Plan
    opened_at: float
    stopped: bool = False

    def age(self) -> float:
        return self.scene.clock - self.opened_at

    def exited(self) -> bool:
        return self.stopped or (self.plan.exits_after is not None and self.age() >= self.plan.exits_after)

    def answers(self) -> bool:
        alive = self.plan.dies_after is None or self.age() < self.plan.dies_after
        return self.plan.answers and alive and not self.exited()

    def reason(self) -> str:
        return self.plan.reason

    def stop(self) -> None:
        self.stopped = True


@dataclass
class Scene:
    plans: list[Plan]
    end: float = 600.0
    clock: float = 0.0
    slept_at: float | None = None  # the laptop sleeps an hour at this time
    forwards: list[FakeForward] = field(default_factory=list)
    remote_ports: list[int] = field(default_factory=list)
    said: list[tuple[str, object, float]] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.clock

    def wall(self) -> float:
        # The monotonic clock stands still while a laptop sleeps; the wall clock does not.
        return self.clock + (3600.0 if self.slept_at is not None and self.clock >= self.slept_at else 0.0)

    def sleep(self, seconds: float) -> None:
        self.clock += seconds
        if self.clock >= self.end:
            raise KeyboardInterrupt

    def open(self, _target: SshTarget, _local: int, remote: int) -> ForwardProcess:
        self.remote_ports.append(remote)
        forward = FakeForward(self, self.plans.pop(0) if self.plans else Plan(), self.clock)
        self.forwards.append(forward)
        return forward

    def probe(self, _port: int, _timeout: float) -> str | None:
        forward = self.forwards[-1]
        gone = forward.plan.jupyter_gone_after
        if gone is not None and forward.age() >= gone and not forward.exited():
            return JUPYTER_GONE
        return None if forward.answers() else "no answer through the forward"

    def restart(self) -> int:
        """serve on the server again: Jupyter comes back on another port."""
        self.said.append(("restart", None, self.clock))
        return 9999

    def holder(self) -> Holder:
        events = Events(
            up=lambda first: self.said.append(("up", first, self.clock)),
            down=lambda why: self.said.append(("down", why, self.clock)),
            waiting=lambda wait, why: self.said.append(("waiting", wait, self.clock)),
        )
        return Holder(
            SshTarget("ubuntu@203.0.113.7"),
            12345,
            8888,
            events,
            monotonic=self.monotonic,
            wall=self.wall,
            sleep=self.sleep,
            probe=self.probe,
            open_forward=self.open,
            restart=self.restart,
        )

    def run(self) -> None:
        with pytest.raises(KeyboardInterrupt):
            self.holder().hold()
        assert self.forwards[-1].stopped, "Ctrl-C left the forward's ssh running"

    def said_of(self, kind: str) -> list[object]:
        return [what for said, what, _ in self.said if said == kind]


def test_a_first_forward_that_fails_at_once_is_reported_not_retried() -> None:
    scene = Scene([Plan(exits_after=0.3, answers=False, reason="Bad local forwarding specification")])
    with pytest.raises(StartFailed, match="Bad local forwarding specification") as failed:
        scene.holder().hold()
    assert "no network drop" in (failed.value.hint or "")
    assert len(scene.forwards) == 1
    assert scene.said == []


def test_a_first_forward_that_never_answers_is_given_up_at_the_gate_time() -> None:
    scene = Scene([Plan(answers=False)])
    with pytest.raises(StartFailed, match="did not work within 30 s"):
        scene.holder().hold()
    assert 30 <= scene.clock < 32
    assert len(scene.forwards) == 1
    assert scene.forwards[0].stopped


def test_drops_are_reopened_with_waits_that_double_up_to_a_cap() -> None:
    network_down = [Plan(exits_after=0.1, answers=False, reason="Network is unreachable")] * 7
    scene = Scene([Plan(exits_after=5), *network_down, Plan()], end=400)
    scene.run()
    assert scene.said_of("up") == [True, False]
    assert scene.said_of("down") == ["Connection reset by peer"]
    # The first reopen comes at once; then each failed one says how long until the next.
    assert scene.said_of("waiting") == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert len(scene.forwards) == 9


def test_a_forward_that_stayed_up_starts_the_waits_over() -> None:
    flap = [Plan(exits_after=0.1, answers=False)] * 3
    scene = Scene([Plan(exits_after=5), *flap, Plan(exits_after=120), *flap, Plan()], end=600)
    scene.run()
    assert scene.said_of("waiting") == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0]
    assert scene.said_of("up") == [True, False, False]


def test_a_dead_connection_is_noticed_by_the_probe_and_at_once_after_a_sleep() -> None:
    # The connection dies at 100 s but ssh lives on: the probes (every 10 s) notice it.
    scene = Scene([Plan(dies_after=100), Plan()], end=200)
    scene.run()
    (_, _, down_at), *_ = [s for s in scene.said if s[0] == "down"]
    assert 100 < down_at <= 100 + PROBE_INTERVAL + 1

    # Back from a sleep, the first look is at once, not at the next probe.
    scene = Scene([Plan(dies_after=103), Plan()], end=200, slept_at=103.1)
    scene.run()
    (_, _, down_at), *_ = [s for s in scene.said if s[0] == "down"]
    assert 103 < down_at <= 105


def test_when_jupyter_is_gone_on_the_server_serve_runs_again_and_the_forward_follows_its_port() -> None:
    scene = Scene([Plan(jupyter_gone_after=50), Plan()], end=100)
    scene.run()
    assert scene.said_of("down") == [JUPYTER_GONE]
    assert len(scene.said_of("restart")) == 1
    assert scene.remote_ports == [8888, 9999]
    assert scene.said_of("up") == [True, False]
    assert scene.said_of("waiting") == []


def test_a_first_forward_to_a_port_where_nothing_listens_is_not_restarted() -> None:
    scene = Scene([Plan(jupyter_gone_after=0)])
    with pytest.raises(StartFailed, match="did not work within 30 s: Jupyter does not answer"):
        scene.holder().hold()
    assert scene.said_of("restart") == []


@pytest.mark.parametrize(
    ("steps", "decision"),
    [
        # (what happened, at time) ... -> what went_down decides at the last time
        ([("opened", 0)], GiveUp("the first forward failed before it ever worked")),
        ([("opened", 0), ("came_up", 1)], Retry(0.0)),
        ([("opened", 0), ("came_up", 1), ("down", 2), ("opened", 2)], Retry(1.0)),
        ([("opened", 0), ("came_up", 1), ("down", 2), ("opened", 2), ("down", 3), ("opened", 4)], Retry(2.0)),
        ([("opened", 0), ("came_up", 1), ("down", 2), ("opened", 2), ("came_up", 3)], Retry(1.0)),
        ([("opened", 0), ("came_up", 1), ("down", 2), ("opened", 2), ("came_up", 3), ("at", 63)], Retry(0.0)),
    ],
)
def test_reconnect_policy(steps: list[tuple[str, float]], decision: Retry | GiveUp) -> None:
    policy = ReconnectPolicy()
    now = 0.0
    for step, now in steps:
        if step == "opened":
            policy.opened(now)
        elif step == "came_up":
            policy.came_up(now)
        elif step == "down":
            policy.went_down(now)
    assert policy.went_down(now) == decision


def test_the_gate_time_applies_to_each_forward_until_it_works() -> None:
    policy = ReconnectPolicy(gate_time=30)
    policy.opened(0)
    assert not policy.overdue(29.9)
    assert policy.overdue(30)
    policy.came_up(31)
    assert not policy.overdue(100)
