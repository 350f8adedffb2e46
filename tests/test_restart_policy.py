"""The restart policy's decisions, table-tested: times are given, no clock runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_agent.supervision.restart_policy import RestartPolicy
from remote_agent.supervision.supervisor import describe_exit, rotate

POLICY = RestartPolicy(burst=3, interval=60.0, delay=1.0, quick_delay=5.0, startsecs=10.0)


@pytest.mark.parametrize(
    ("restarts", "started_at", "now", "restart", "delay"),
    [
        ((), 0.0, 100.0, True, 1.0),  # first death after a long run: restart soon
        ((), 99.0, 100.0, True, 1.0),  # first death even right after start: one quick retry
        ((90.0,), 95.0, 100.0, True, 5.0),  # died again within startsecs: wait longer
        ((70.0,), 71.0, 100.0, True, 1.0),  # ran 29 s: a good start, the usual delay
        ((50.0, 70.0), 95.0, 100.0, True, 5.0),  # third restart in the window
        ((50.0, 70.0, 90.0), 95.0, 100.0, False, 0.0),  # the burst is used up: give up
        ((10.0, 20.0, 30.0), 95.0, 100.0, True, 1.0),  # those were over a minute ago: a fresh start
        ((39.0, 41.0, 90.0), 95.0, 100.0, True, 5.0),  # one fell out of the window a second ago
    ],
)
def test_restart_or_give_up(
    restarts: tuple[float, ...], started_at: float, now: float, restart: bool, delay: float
) -> None:
    decision = POLICY.decide("killed by SIGKILL", restarts, started_at, now)
    assert decision.restart is restart
    assert decision.delay == delay
    if restart:
        assert decision.restarts[-1] == now + delay, "this restart counts from when it happens"
        assert all(now - t < POLICY.interval for t in decision.restarts[:-1])
        assert "restarting" in decision.reason
    else:
        assert "4 times within 1 min" in decision.reason
        assert "killed by SIGKILL" in decision.reason


def test_a_process_that_dies_at_once_every_time_is_given_up_after_the_burst() -> None:
    restarts: tuple[float, ...] = ()
    now, decisions = 0.0, 0
    while True:
        decision = POLICY.decide("exit status 1", restarts, now, now + 2.0)  # dies 2 s after each start
        if not decision.restart:
            break
        decisions += 1
        restarts, now = decision.restarts, decision.restarts[-1]
    assert decisions == POLICY.burst


@pytest.mark.parametrize(
    ("status", "signum", "words"),
    [
        ("", "9", "SIGKILL (the out-of-memory killer"),
        ("", "15", "SIGTERM"),
        ("1", "", "exit status 1"),
        ("", "", "ended"),
    ],
)
def test_exits_in_words(status: str, signum: str, words: str) -> None:
    assert words in describe_exit(status, signum)


def test_jupyter_log_is_capped_with_one_backup_while_its_writer_appends(tmp_path: Path) -> None:
    log = tmp_path / "jupyter.log"
    with log.open("a") as writer:  # Jupyter holds its log open in append mode
        writer.write("old line\n" * 200)
        writer.flush()
        assert not rotate(log, 10_000)
        assert rotate(log, 1_000)
        writer.write("new line\n")
        writer.flush()
    assert log.read_text() == "new line\n"
    assert (tmp_path / "jupyter.log.1").read_text() == "old line\n" * 200
    assert (tmp_path / "jupyter.log.1").stat().st_mode & 0o777 == 0o600
