"""The keeper under faults: each test injects one, through the fake agent or by killing a process.

The fake agent stands in for the ngrok cloud, which cannot be reached from here; every
other process (tmux, Jupyter, kernels, the keeper) is real.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import PASSWORD, TOKEN, Sandbox, pid_alive, wait_until
from jupyter_client import JupyterClient

from remote_agent.tunnel.keeper import LONG_BACKOFF

URL_LINE = r"Public URL\s+(http://\S+)"


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def fill_up(path: Path) -> None:
    """Write until the filesystem says it is full."""
    try:
        with path.open("wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise


def agents_started(sandbox: Sandbox) -> int:
    return sum(1 for e in sandbox.fake.events() if e["event"] == "started")


def test_agent_killed_five_times_gives_a_working_url_each_time(sandbox: Sandbox) -> None:
    serve = sandbox.follow()
    urls = [serve.wait_for(URL_LINE, timeout=90)[1]]
    keeper = sandbox.tunnel_state()["keeper_pid"]
    for _ in range(5):
        os.kill(sandbox.tunnel_state()["agent_pid"], signal.SIGKILL)
        start = len(serve.lines)
        # Today each reopen gets the account's dev domain again: the same URL.
        url = serve.wait_for(r"Tunnel back at the same URL\s+(http://\S+)", timeout=30, start=start)[1]
        assert url == urls[0]
        urls.append(url)
        assert JupyterClient(url).get("/api").status_code == 200
        assert len(sandbox.fake.live_agent_pids()) == 1, "two agents alive at once"
        assert not zombies_of(keeper), "the keeper left a zombie agent"
    assert sandbox.tunnel_state()["reopened"] == 5


def test_hung_agent_is_replaced(sandbox: Sandbox) -> None:
    serve = sandbox.follow()
    first = serve.wait_for(URL_LINE, timeout=90)[1]
    hung = sandbox.tunnel_state()["agent_pid"]
    os.kill(hung, signal.SIGSTOP)
    new = serve.wait_for(r"Tunnel back at the same URL\s+(http://\S+)", timeout=45)[1]
    assert new == first, "the account's dev domain again"
    assert not pid_alive(hung), "the hung agent was left behind"
    assert JupyterClient(new).get("/api").status_code == 200
    assert sandbox.run("status").returncode == 0


def test_agent_reconnecting_by_itself_keeps_its_url(sandbox: Sandbox) -> None:
    serve = sandbox.follow()
    url = serve.wait_for(URL_LINE, timeout=90)[1]
    # Long enough that `status` surely runs while it lasts, even on a busy machine.
    sandbox.fake.start_outage(10)
    wait_until(lambda: sandbox.tunnel_state().get("status") == "reconnecting", 10, "the keeper to see the outage")
    status = sandbox.run("status", "--json")
    assert status.returncode == 3
    assert "reconnecting" in json.loads(status.stdout)["tunnel"]["last_error"]
    wait_until(lambda: sandbox.tunnel_state().get("status") == "up", 40, "the agent to come back")
    assert sandbox.tunnel_state()["public_url"] == url
    assert agents_started(sandbox) == 1, "the keeper killed an agent that was reconnecting"
    assert sandbox.run("url").stdout.strip() == url
    assert not [line for line in serve.lines if "New public URL" in line]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("ERR_NGROK_107", "revoked"),
        ("ERR_NGROK_4018", "verified account"),
        ("ERR_NGROK_120", "no longer supported"),
        ("ERR_NGROK_121", "older than the minimum version"),
        ("ERR_NGROK_727", "monthly limit"),
    ],
)
def test_fatal_ngrok_errors_stop_the_keeper_and_say_why(sandbox: Sandbox, code: str, words: str) -> None:
    sandbox.fake.set_control(startup_error=code)
    result = sandbox.run("serve", "--detach")
    assert result.returncode == 5, result.stdout + result.stderr
    assert code in result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    status = sandbox.run("status", "--json")
    assert status.returncode == 3
    assert code in json.loads(status.stdout)["tunnel"]["last_error"]
    # No retry loop: the keeper has ended after one attempt.
    wait_until(lambda: sandbox.tmux("list-windows", "-t", "remote-agent").stdout.count("tunnel") == 0, 10, "exit")
    assert agents_started(sandbox) + sum(1 for e in sandbox.fake.events() if e["event"] == "startup_failed") == 1


def test_another_agent_on_the_account_is_waited_for_never_killed(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.fake.set_control(agent_limit=1)  # the account's agent limit is reached (3 on the free plan)
    config = tmp_path / "theirs.yml"
    config.write_text(f'version: "3"\nagent:\n  authtoken: "{TOKEN}"\n  web_addr: 127.0.0.1:0\n')
    theirs = subprocess.Popen(
        [str(sandbox.fake.path), "start", "--none", "--log", "stdout", "--config", str(config)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: theirs.pid in sandbox.fake.live_agent_pids(), 10, "the user's own agent")
        wait_until(lambda: any(e["event"] == "started" for e in sandbox.fake.events()), 10, "it to register")
        result = sandbox.run("serve", "--detach")
        assert result.returncode == 5
        assert "ERR_NGROK_108" in result.stderr
        assert "another ngrok agent" in result.stderr
        assert "comes up by itself" in result.stderr
        assert pid_alive(theirs.pid), "remote-agent killed an agent it did not start"
        status = json.loads(sandbox.run("status", "--json").stdout)
        assert "ERR_NGROK_108" in status["tunnel"]["last_error"]
        assert status["jupyter"]["running"] is True
        keeper = sandbox.tunnel_state()["keeper_pid"]
        assert pid_alive(keeper)
    finally:
        theirs.kill()
        theirs.wait(10)
    # Once the other agent is gone, the tunnel comes up by itself at the keeper's next try.
    # The tries are spaced as LONG_BACKOFF says (10 s, then 30 s, each give or take a fifth):
    # the deadline covers the second one, in case a busy machine let the first pass meanwhile.
    url = wait_until(lambda: current_url(sandbox), 90, "the tunnel to come up by itself")
    failed = [e["at"] for e in sandbox.fake.events() if e["event"] == "startup_failed"]
    assert failed, "the keeper never met the other agent"
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed)]
    assert all(gap >= LONG_BACKOFF[0] * 0.8 for gap in gaps), f"the keeper retried without waiting: {gaps}"
    assert JupyterClient(url).get("/api").status_code == 200


def current_url(sandbox: Sandbox) -> str:
    return sandbox.run("url").stdout.strip()


def test_jupyter_killed_is_restarted_and_reported(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach").returncode == 0
    url = sandbox.run("url").stdout.strip()
    old = sandbox.jupyter_record()["pid"]
    os.kill(old, signal.SIGKILL)
    # Nobody runs serve: the session's supervisor starts Jupyter again, behind the same URL.
    wait_until(
        lambda: sandbox.jupyter_record()["pid"] != old and JupyterClient(url).get("/api").status_code == 200,
        90,
        "Jupyter to answer again through the tunnel",
    )
    status = sandbox.run("status")
    assert status.returncode == 0, status.stdout
    assert "restarted once by itself" in status.stdout
    again = sandbox.run("serve", "--detach")
    assert again.returncode == 0, again.stderr
    assert "kernels from before then were lost" in again.stderr
    assert JupyterClient(sandbox.run("url").stdout.strip()).login(PASSWORD).status_code == 302


def test_two_serves_at_the_same_moment(sandbox: Sandbox) -> None:
    first, second = sandbox.follow(), sandbox.follow()
    url_one = first.wait_for(URL_LINE, timeout=120)[1]
    url_two = second.wait_for(URL_LINE, timeout=120)[1]
    assert url_one == url_two
    windows = sandbox.tmux("list-windows", "-t", "remote-agent", "-F", "#{window_name}").stdout.split()
    assert sorted(windows) == ["jupyter", "tunnel", "watch"]
    assert agents_started(sandbox) == 1
    assert len(sandbox.fake.live_agent_pids()) == 1


def test_keeper_killed_is_restarted_and_its_orphaned_agent_ended(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach").returncode == 0
    state = sandbox.tunnel_state()
    os.kill(state["keeper_pid"], signal.SIGKILL)
    wait_until(lambda: not pid_alive(state["keeper_pid"]), 10, "the keeper to die")
    again = sandbox.run("serve", "--detach")
    assert again.returncode == 0, again.stderr
    url = sandbox.run("url").stdout.strip()
    assert url
    assert JupyterClient(url).get("/api").status_code == 200
    assert not pid_alive(state["agent_pid"]), "the orphaned agent was left running"
    assert sandbox.fake.live_agent_pids() == [sandbox.tunnel_state()["agent_pid"]]


def test_corrupt_state_files_are_recovered(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach").returncode == 0
    jupyter = sandbox.jupyter_record()["pid"]
    url = sandbox.run("url").stdout.strip()
    (sandbox.state_dir / "tunnel.json").write_text("{ half a file")
    wait_until(lambda: sandbox.run("url").stdout.strip() == url, 10, "the keeper to rewrite its state")
    (sandbox.state_dir / "jupyter.json").write_text("garbage")
    (sandbox.state_dir / "keeper.json").write_text("")
    again = sandbox.run("serve", "--detach")
    assert again.returncode == 0, again.stderr
    assert sandbox.jupyter_record()["pid"] == jupyter, "Jupyter was restarted over a corrupt record"
    assert sandbox.run("url").returncode == 0
    assert not list(sandbox.state_dir.glob(".*.json.*")), "a temporary file was left behind"


def test_unwritable_state_directory_is_a_plain_error(sandbox: Sandbox, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = sandbox.run("serve", "--detach", REMOTE_AGENT_HOME=str(blocker / "state"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "REMOTE_AGENT_HOME" in result.stderr


def test_full_state_directory_is_a_plain_error_and_leaves_no_half_file(sandbox: Sandbox, tmp_path: Path) -> None:
    disk = tmp_path / "tiny-disk"
    disk.mkdir()
    # A real full filesystem: a 64 KiB tmpfs, filled up.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        home = disk / "state"
        home.mkdir()
        filler = disk / "filler"
        fill_up(filler)
        result = sandbox.run("serve", "--detach", REMOTE_AGENT_HOME=str(home))
        assert result.returncode == 2, result.stderr
        assert "is full" in result.stderr
        assert "Traceback" not in result.stderr
        assert not [p for p in home.iterdir() if p.name.startswith(".")], "a half-written file was left"
        assert sandbox.tmux_server_pid() is None, "it started things it cannot keep track of"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
