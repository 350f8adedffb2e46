"""Everything comes back by itself: a killed keeper or Jupyter runs again without a `serve`.

Real tmux, Jupyter, kernels and keeper; the fake agent stands in for the ngrok cloud,
which cannot be reached from here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

from conftest import PASSWORD, Sandbox, pid_alive, wait_until
from jupyter_client import JupyterClient

from remote_agent.jupyter.running import answers

READY = r'"event": "ready"'


def status_json(sandbox: Sandbox) -> dict[str, Any]:
    result = sandbox.run("status", "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def kill_jupyter_and_wait_for_the_next(sandbox: Sandbox, timeout: float = 90.0) -> int:
    """SIGKILL Jupyter (as the OOM killer does); the pid of the Jupyter that answers again."""
    killed = sandbox.jupyter_record()["pid"]
    os.kill(killed, signal.SIGKILL)

    def back() -> int | None:
        pid = sandbox.jupyter_record().get("pid")
        return pid if pid != killed and pid_alive(pid) and answers(sandbox.port) else None

    pid: int = wait_until(back, timeout, "Jupyter to be restarted by itself")
    return pid


def test_killed_keeper_and_jupyter_come_back_in_ngrok_mode(sandbox: Sandbox) -> None:
    serve = sandbox.follow("--json")
    ready = json.loads(serve.wait_for(READY, timeout=90).string)
    url = ready["public_url"]

    # The keeper is killed outright: a new one runs within seconds and the tunnel is up again.
    keeper = sandbox.tunnel_state()["keeper_pid"]
    os.kill(keeper, signal.SIGKILL)
    wait_until(
        lambda: (
            sandbox.tunnel_state().get("keeper_pid") not in (None, keeper)
            and sandbox.tunnel_state().get("status") == "up"
        ),
        60,
        "a new keeper with the tunnel up",
    )
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).get("/api").status_code == 200
    assert serve.proc.poll() is None, "the following serve gave up when the keeper was killed"

    # Jupyter is killed (the OOM killer): it is back with the same settings, and everyone is told.
    pid = kill_jupyter_and_wait_for_the_next(sandbox)
    event = json.loads(serve.wait_for(r'"event": "jupyter_restarted"', timeout=30).string)
    assert event["jupyter_pid"] == pid
    assert "SIGKILL" in event["reason"]
    status = status_json(sandbox)
    assert status["jupyter"]["running"] is True
    assert status["jupyter"]["pid"] == pid
    assert status["jupyter"]["port"] == sandbox.port
    assert status["jupyter"]["restarts"] == 1
    assert status["jupyter"]["last_restart"]
    text = sandbox.run("status").stdout
    assert "restarted once by itself" in text
    assert "kernels lost" in text
    again = sandbox.run("serve", "--detach")
    assert again.returncode == 0, again.stderr
    assert "Jupyter was restarted by itself" in again.stderr
    assert "kernels from before then were lost" in again.stderr
    assert f"already running (pid {pid})" in again.stdout

    # The restarted Jupyter takes the same password, through the tunnel too.
    assert JupyterClient(sandbox.run("url").stdout.strip()).login(PASSWORD).status_code == 302
    user = JupyterClient(f"http://127.0.0.1:{sandbox.port}/")
    assert user.login(PASSWORD).status_code == 302
    kernel = user.start_kernel()
    # A job started from a notebook that is meant to outlive Jupyter.
    job = int(
        user.execute(
            kernel,
            "import subprocess\np = subprocess.Popen(['sleep', '600'], start_new_session=True)\nprint(p.pid)",
        )
    )
    try:
        stop = sandbox.run("stop")
        assert stop.returncode == 0, stop.stderr
        assert "Still running, started from a notebook" in stop.stdout
        assert f"pid {job}: sleep 600" in stop.stdout
        assert pid_alive(job), "stop killed a job it should only have named"
        assert not pid_alive(pid)
        assert not sandbox.fake.live_agent_pids()
        assert sandbox.tmux("has-session", "-t", "remote-agent").returncode != 0, "stopped, yet restarted"
    finally:
        os.kill(job, signal.SIGKILL)


def test_ssh_mode_jupyter_comes_back_then_gives_up_when_it_keeps_dying(sandbox: Sandbox) -> None:
    first = sandbox.run("serve", NGROK_AUTHTOKEN=None)
    assert first.returncode == 0, first.stderr
    kill_jupyter_and_wait_for_the_next(sandbox)
    assert status_json(sandbox)["jupyter"]["restarts"] == 1

    # Now every new Jupyter dies at once: another program took its port.
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        os.kill(sandbox.jupyter_record()["pid"], signal.SIGKILL)
        wait_until(lambda: not answers(sandbox.port, timeout=0.2), 10, "the port to be free")
        blocker.bind(("127.0.0.1", sandbox.port))
        blocker.listen()
        error = wait_until(
            lambda: status_json(sandbox)["jupyter"].get("restart_error"), 120, "the supervisor to give up"
        )
        assert "not restarted again" in error
        status = sandbox.run("status")
        assert status.returncode == 3
        assert "not restarted again" in status.stdout
        logs = sandbox.run("logs", "-n", "400").stdout
        assert "not restarted again" in logs
        assert "is already in use" in logs, "the log shows why each start failed"
    finally:
        blocker.close()
    # Once the cause is gone, serve starts it again and says what happened.
    again = sandbox.run("serve", NGROK_AUTHTOKEN=None)
    assert again.returncode == 0, again.stderr
    assert "not restarted again" in again.stderr
    assert answers(sandbox.port)


def test_silent_agent_at_start_up_leaves_nothing_behind_after_stop(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(silent=True)
    serve = sandbox.follow()

    def silent_agent() -> int | None:
        pid = sandbox.tunnel_state().get("agent_pid")
        return pid if pid and pid in sandbox.fake.live_agent_pids() else None

    # The agent that says nothing is recorded while it starts, so stop can end it.
    agent = wait_until(silent_agent, 90, "the silent agent to be recorded")
    keeper = sandbox.tunnel_state()["keeper_pid"]
    # Ctrl-C rather than waiting out serve's 45 s deadline (that path: test_agent_lifecycle.py).
    assert serve.stop(signal.SIGINT) == 130
    stop = sandbox.run("stop", timeout=30)
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(agent)
    assert not pid_alive(keeper)
    assert not sandbox.fake.live_agent_pids()
    # The keeper heard the stop while the agent was silent, rather than being killed after a timeout.
    assert "keeper stopped" in (sandbox.state_dir / "keeper.log").read_text()
