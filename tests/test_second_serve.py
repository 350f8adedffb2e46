"""A second `serve`, as a user runs it after a reconnect: from $HOME, from another project, after a reboot.

SSH lands in the home directory, not in the project that holds `.env`. The session keeps
the settings it was started with until `stop`; only a setting given on purpose changes
it, and a change that would weaken the public endpoint needs --reconfigure.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORD, TOKEN, Sandbox, descendants, free_port, pid_alive, wait_until
from fakeagent import FakeNgrok
from jupyter_client import JupyterClient

from remote_agent.config.session import compare, weakenings

BASIC = "colleague:edge-password-123"


def project_with_env(sandbox: Sandbox, text: str) -> Path:
    """A project directory whose .env holds the settings, as the README tells users to make it."""
    project = sandbox.home / "project"
    project.mkdir(exist_ok=True)
    env = project / ".env"
    env.write_text(text)
    env.chmod(0o600)
    return project


def settings_only_in_env_file(sandbox: Sandbox) -> dict[str, str | None]:
    """The shell of a user who keeps the token, password and port in .env, not in the environment."""
    return {"NGROK_AUTHTOKEN": None, "JUPYTER_PASSWORD": None, "JUPYTER_PORT": None}


def ready(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    event: dict[str, object] = lines[0]
    assert event["event"] == "ready"
    return event


def edge_asks_for_basic_auth(url: str) -> bool:
    return JupyterClient(url).get("/login").status_code == 401


def protected_project(sandbox: Sandbox) -> Path:
    return project_with_env(
        sandbox,
        f"NGROK_AUTHTOKEN={TOKEN}\nJUPYTER_PASSWORD={PASSWORD}\nJUPYTER_PORT={sandbox.port}\nNGROK_BASIC_AUTH={BASIC}\n",
    )


def test_serve_from_home_and_from_another_project_keeps_the_session(sandbox: Sandbox) -> None:
    shell = settings_only_in_env_file(sandbox)
    project = protected_project(sandbox)
    first = ready(sandbox.run("serve", "--detach", "--json", cwd=project, env=shell))
    url = str(first["public_url"])
    agent = sandbox.tunnel_state()["agent_pid"]
    assert edge_asks_for_basic_auth(url)

    # After a reconnect: SSH lands in $HOME, where there is no .env.
    again = ready(sandbox.run("serve", "--detach", "--json", cwd=sandbox.home, env=shell))
    assert again["jupyter_pid"] == first["jupyter_pid"]
    assert again["public_url"] == url
    assert sandbox.tunnel_state()["agent_pid"] == agent
    assert edge_asks_for_basic_auth(url)

    # From another project whose .env says something else: not read, and the user is told.
    other = sandbox.home / "other"
    other.mkdir()
    (other / ".env").write_text(f"JUPYTER_PORT={free_port()}\n")
    elsewhere = sandbox.run("serve", "--detach", "--json", cwd=other, env=shell)
    assert ready(elsewhere)["jupyter_pid"] == first["jupyter_pid"]
    assert f"{other / '.env'} is not read" in elsewhere.stderr
    assert str(project / ".env") in elsewhere.stderr
    assert sandbox.tunnel_state()["agent_pid"] == agent
    assert JupyterClient(url).get("/login").status_code == 401

    # status and url, from $HOME, see the same session.
    status = json.loads(sandbox.run("status", "--json", cwd=sandbox.home, env=shell).stdout)
    assert status["tunnel"]["public_url"] == url
    assert status["jupyter"]["port"] == sandbox.port


def kill_everything_but_the_records(sandbox: Sandbox) -> None:
    """What a reboot does to the session: every process gone, the files under the state directory kept."""
    server = sandbox.tmux_server_pid()
    assert server is not None
    pids = [*descendants(server), server]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    sandbox.fake.kill_all()
    for pid in pids:
        wait_until(lambda p=pid: not pid_alive(p), 10, f"pid {pid} to end")  # type: ignore[misc]


def test_serve_after_a_reboot_from_home_brings_back_the_same_session(sandbox: Sandbox) -> None:
    shell = settings_only_in_env_file(sandbox)
    project = protected_project(sandbox)
    first = ready(sandbox.run("serve", "--detach", "--json", cwd=project, env=shell))
    kill_everything_but_the_records(sandbox)

    back = ready(sandbox.run("serve", "--detach", "--json", cwd=sandbox.home, env=shell))
    assert back["jupyter_pid"] != first["jupyter_pid"]
    assert back["local_url"] == f"http://127.0.0.1:{sandbox.port}/"
    assert back["public_url"] == first["public_url"], "ngrok mode again, at the account's dev domain"
    assert edge_asks_for_basic_auth(str(back["public_url"]))
    # The notebook directory is still the project, where serve first ran.
    assert sandbox.jupyter_record()["root_dir"] == str(project)


def test_a_weaker_env_file_is_refused_unless_reconfigure(sandbox: Sandbox) -> None:
    shell = settings_only_in_env_file(sandbox)
    project = protected_project(sandbox)
    first = ready(sandbox.run("serve", "--detach", "--json", cwd=project, env=shell))
    url = str(first["public_url"])
    agent = sandbox.tunnel_state()["agent_pid"]
    weaker = sandbox.home / "weaker.env"
    weaker.write_text(f"NGROK_AUTHTOKEN={TOKEN}\nJUPYTER_PORT={sandbox.port}\n")

    refused = sandbox.run("serve", "--detach", "--env-file", str(weaker), cwd=sandbox.home, env=shell)
    assert refused.returncode == 2
    assert "NGROK_BASIC_AUTH" in refused.stderr
    assert "--reconfigure" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sandbox.tunnel_state()["agent_pid"] == agent
    assert edge_asks_for_basic_auth(url)

    applied = sandbox.run("serve", "--detach", "--json", "--env-file", str(weaker), "--reconfigure", env=shell)
    event = ready(applied)
    assert event["jupyter_pid"] == first["jupyter_pid"]
    assert "NGROK_BASIC_AUTH is no longer set" in applied.stderr
    assert JupyterClient(str(event["public_url"])).get("/login").status_code == 200

    # The named file is now the session's .env: serve from $HOME keeps the new settings.
    later = sandbox.run("serve", "--detach", "--json", cwd=sandbox.home, env=shell)
    assert ready(later)["jupyter_pid"] == first["jupyter_pid"]


def test_switching_to_ssh_needs_reconfigure(sandbox: Sandbox) -> None:
    first = ready(sandbox.run("serve", "--detach", "--json"))
    refused = sandbox.run("serve", "--detach", "--tunnel", "ssh")
    assert refused.returncode == 2
    assert "--tunnel ssh" in refused.stderr
    assert sandbox.run("url").returncode == 0
    switched = ready(sandbox.run("serve", "--detach", "--json", "--tunnel", "ssh", "--reconfigure"))
    assert switched["jupyter_pid"] == first["jupyter_pid"]
    assert switched["public_url"] is None
    assert sandbox.run("url").returncode == 3


def test_a_changed_port_is_reported_not_applied_while_jupyter_runs(sandbox: Sandbox) -> None:
    first = ready(sandbox.run("serve", "--detach", "--json", "--tunnel", "ssh"))
    other_port = free_port()
    again = sandbox.run("serve", "--detach", "--json", "--port", str(other_port))
    event = ready(again)
    assert event["jupyter_pid"] == first["jupyter_pid"]
    assert event["local_url"] == f"http://127.0.0.1:{sandbox.port}/"
    assert f"keeps running with port {sandbox.port}" in again.stderr
    assert "remote-agent stop" in again.stderr


def test_two_homes_with_one_session_name_never_touch_each_other(tmp_path: Path) -> None:
    a = Sandbox(tmp_path / "a", FakeNgrok(tmp_path / "a-ngrok"))
    b = Sandbox(tmp_path / "b", FakeNgrok(tmp_path / "b-ngrok"))
    b.env["TMUX_TMPDIR"] = a.env["TMUX_TMPDIR"]  # one tmux server, as for one user with two homes
    try:
        first = ready(a.run("serve", "--detach", "--json", "--tunnel", "ssh"))
        clash = b.run("serve", "--detach", "--tunnel", "ssh")
        assert clash.returncode == 2
        assert "belongs to another remote-agent home" in clash.stderr
        assert "REMOTE_AGENT_SESSION" in clash.stderr
        stopped = b.run("stop")
        assert stopped.returncode == 0
        assert "Nothing was running" in stopped.stdout
        assert pid_alive(int(str(first["jupyter_pid"])))
        own = ready(b.run("serve", "--detach", "--json", "--tunnel", "ssh", REMOTE_AGENT_SESSION="remote-agent-b"))
        assert own["jupyter_pid"] != first["jupyter_pid"]
        assert b.run("stop", REMOTE_AGENT_SESSION="remote-agent-b").returncode == 0
        assert pid_alive(int(str(first["jupyter_pid"])))
        assert ready(a.run("serve", "--detach", "--json"))["jupyter_pid"] == first["jupyter_pid"]
    finally:
        b.cleanup()
        a.cleanup()


def test_records_written_by_the_previous_version_are_migrated(sandbox: Sandbox) -> None:
    first = ready(sandbox.run("serve", "--detach", "--json", "--tunnel", "ssh"))
    pid = int(str(first["jupyter_pid"]))
    # What the first release left: a Jupyter record without version, start time or launch digest, the
    # notebook directory in remembered.json, no session record, an unmarked tmux session.
    record = sandbox.jupyter_record()
    old = {k: record[k] for k in ("pid", "port", "root_dir", "provider", "started_at", "app")}
    (sandbox.state_dir / "jupyter.json").write_text(json.dumps(old))
    (sandbox.state_dir / "remembered.json").write_text(json.dumps({"root_dir": str(sandbox.notebooks)}))
    (sandbox.state_dir / "session.json").unlink()
    (sandbox.state_dir / "session-secrets.json").unlink()
    sandbox.tmux("set-option", "-u", "-t", "=remote-agent:", "@remote_agent_home")

    upgraded = sandbox.run("serve", "--detach", "--json", "--tunnel", "ssh", cwd=sandbox.home)
    assert ready(upgraded)["jupyter_pid"] == pid
    assert "earlier version of remote-agent" in upgraded.stderr
    migrated = sandbox.jupyter_record()
    assert migrated["version"] == 2
    assert isinstance(migrated["proc_start"], int)
    session = json.loads((sandbox.state_dir / "session.json").read_text())
    assert session["applied"]["JUPYTER_ROOT_DIR"] == str(sandbox.notebooks)
    assert not (sandbox.state_dir / "remembered.json").exists()


def test_json_output_has_no_terminal_decoration_even_on_a_terminal(sandbox: Sandbox) -> None:
    """As `ssh -t HOST remote-agent serve --json` runs it: stdout and stderr are a terminal."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "remote_agent", "serve", "--detach", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=out_slave,
        stderr=err_slave,
        cwd=sandbox.notebooks,
        env=sandbox.environ(),
    )
    os.close(out_slave)
    os.close(err_slave)
    try:
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = read_all(out_master), read_all(err_master)
    lines = [line for line in out.replace("\r\n", "\n").splitlines() if line]
    assert lines
    assert all(json.loads(line)["event"] for line in lines)
    assert "\r" not in err.replace("\r\n", "\n")
    assert "\x1b" not in err


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def test_stop_and_a_second_serve_do_not_wait_for_a_password_prompt(sandbox: Sandbox) -> None:
    """The first serve asks for a password on a terminal; meanwhile the others go ahead."""
    master, slave = pty.openpty()
    prompting = subprocess.Popen(
        [sys.executable, "-m", "remote_agent", "serve", "--detach", "--tunnel", "ssh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=sandbox.notebooks,
        env=sandbox.environ(JUPYTER_PASSWORD=None),
        start_new_session=True,
    )
    os.close(slave)
    try:
        seen = b""

        def asks() -> bool:
            nonlocal seen
            seen += os.read(master, 4096)
            return b"password" in seen.lower()

        wait_until(asks, 60, "the first serve to ask for a password")
        assert sandbox.run("stop", timeout=30).returncode == 0
        second = ready(sandbox.run("serve", "--detach", "--json", "--tunnel", "ssh", timeout=120))
        assert pid_alive(int(str(second["jupyter_pid"])))
        assert prompting.poll() is None, "the first serve is still at its prompt"
    finally:
        prompting.kill()
        prompting.wait(10)
        os.close(master)


# -- the decisions, without starting anything -------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "weakened"),
    [
        ({"NGROK_AUTHTOKEN": "t", "NGROK_BASIC_AUTH": "u:p"}, {"NGROK_AUTHTOKEN": "t"}, ["NGROK_BASIC_AUTH"]),
        ({"NGROK_AUTHTOKEN": "t", "NGROK_BASIC_AUTH": "u:p"}, {"NGROK_AUTHTOKEN": "t", "NGROK_BASIC_AUTH": "u:q"}, []),
        ({"NGROK_AUTHTOKEN": "t"}, {}, ["NGROK_AUTHTOKEN"]),
        ({"NGROK_AUTHTOKEN": "t"}, {"NGROK_AUTHTOKEN": "t", "tunnel": "ssh"}, ["--tunnel ssh"]),
        ({"NGROK_AUTHTOKEN": "t", "NGROK_OAUTH": "google"}, {"NGROK_AUTHTOKEN": "t"}, ["NGROK_OAUTH"]),
        (
            {"NGROK_AUTHTOKEN": "t", "NGROK_OAUTH": "google", "NGROK_OAUTH_ALLOW_EMAILS": "a@b.c"},
            {"NGROK_AUTHTOKEN": "t", "NGROK_OAUTH": "google"},
            ["NGROK_OAUTH_ALLOW_EMAILS"],
        ),
        ({"NGROK_AUTHTOKEN": "t", "NGROK_LOGIN_RATE_LIMIT": "20"}, {"NGROK_AUTHTOKEN": "t"}, ["NGROK_LOGIN_RATE"]),
        ({"NGROK_AUTHTOKEN": "t"}, {"NGROK_AUTHTOKEN": "t", "NGROK_BASIC_AUTH": "u:p"}, []),
        ({}, {"NGROK_AUTHTOKEN": "t"}, []),  # ssh mode had no public endpoint to weaken
        ({"tunnel": "ssh", "NGROK_AUTHTOKEN": "t"}, {}, []),
    ],
)
def test_what_weakens_the_public_endpoint(before: dict[str, str], after: dict[str, str], weakened: list[str]) -> None:
    found = weakenings(before, after)
    assert len(found) == len(weakened)
    for reason, name in zip(found, weakened, strict=True):
        assert name in reason


def test_changes_are_sorted_by_what_applying_them_takes() -> None:
    plan = compare(
        {"NGROK_AUTHTOKEN": "old-token", "JUPYTER_PORT": "8888", "NGROK_DOMAIN": "a.example"},
        {
            "NGROK_AUTHTOKEN": "new-token",
            "JUPYTER_PORT": "9000",
            "NGROK_DOMAIN": "a.example",
            "REMOTE_AGENT_SSH_HOST": "h",
        },
    )
    assert [c.key for c in plan.tunnel] == ["NGROK_AUTHTOKEN"]
    assert [c.key for c in plan.jupyter] == ["JUPYTER_PORT"]
    assert [c.key for c in plan.other] == ["REMOTE_AGENT_SSH_HOST"]
    assert plan.url_may_change
    described = plan.tunnel[0].describe()
    assert "old-token" not in described
    assert "new-token" not in described
    assert plan.jupyter[0].describe() == "JUPYTER_PORT: 8888 -> 9000"


def test_a_token_added_later_to_the_sessions_env_file_opens_the_tunnel(sandbox: Sandbox) -> None:
    """serve without a token says where to put one; done there, serve from $HOME opens the tunnel."""
    shell: dict[str, str | None] = {"NGROK_AUTHTOKEN": None, "JUPYTER_PASSWORD": None}
    project = sandbox.home / "project"
    project.mkdir()
    first = sandbox.run("serve", "--detach", "--json", cwd=project, env={**shell, "JUPYTER_PASSWORD": PASSWORD})
    assert ready(first)["public_url"] is None
    plain = sandbox.run("serve", "--detach", cwd=sandbox.home, env={**shell, "JUPYTER_PASSWORD": PASSWORD})
    assert f"NGROK_AUTHTOKEN=... in {project / '.env'}" in plain.stdout
    (project / ".env").write_text(f"NGROK_AUTHTOKEN={TOKEN}\n")
    (project / ".env").chmod(0o600)
    with_token = ready(sandbox.run("serve", "--detach", "--json", cwd=sandbox.home, env=shell))
    assert with_token["jupyter_pid"] == ready(first)["jupyter_pid"]
    assert with_token["public_url"], "the token in the session's .env turns the tunnel on"


def test_a_warm_serve_asks_tmux_once_and_the_session_names_its_home(sandbox: Sandbox, tmp_path: Path) -> None:
    """The everyday serve after a reconnect: one tmux call; `url` and `status` none."""
    first = ready(sandbox.run("serve", "--detach", "--json"))
    owner = sandbox.tmux("show-options", "-t", "=remote-agent:", "-v", "@remote_agent_home")
    assert owner.stdout.strip() == str(sandbox.state_dir), "the session is marked with the home that started it"
    # A tmux on PATH before the real one that notes each call (serve finds tmux on PATH).
    calls = tmp_path / "tmux-calls"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "tmux").write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec /usr/bin/tmux "$@"\n')
    (shim / "tmux").chmod(0o755)
    path = f"{shim}:{sandbox.env['PATH']}"
    records = ["session.json", "ngrok.yml", "supervision.json", "keeper.json"]
    before = {name: os.stat(sandbox.state_dir / name) for name in records}
    again = ready(sandbox.run("serve", "--detach", "--json", PATH=path))
    assert again["jupyter_pid"] == first["jupyter_pid"]
    assert again["public_url"] == first["public_url"]
    assert calls.read_text().split() == ["list-panes"]
    for name, st in before.items():  # nothing changed, so nothing is rewritten (and flushed to disk)
        now = os.stat(sandbox.state_dir / name)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
    calls.unlink()
    assert sandbox.run("url", PATH=path).returncode == 0
    assert sandbox.run("status", PATH=path).returncode == 0
    assert not calls.exists(), "url and status read records and /proc only"
