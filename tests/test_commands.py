"""The commands around serve: password, logs, doctor, attach, stop --tunnel-only, and Jupyter's config."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

from conftest import PASSWORD, Sandbox, pid_alive, wait_until
from jupyter_client import JupyterClient

URL_LINE = r"Public URL\s+(http://\S+)"


def pane_text(sandbox: Sandbox, target: str) -> str:
    return sandbox.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", target).stdout


def test_first_serve_on_a_terminal_asks_for_the_password_twice(sandbox: Sandbox) -> None:
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in sandbox.environ(JUPYTER_PASSWORD=None).items() if k != "TMUX")
    command = f"cd {shlex.quote(str(sandbox.notebooks))} && env -i {env} {sys.executable} -m remote_agent serve"
    # A terminal of its own, as the user's SSH session: tmux runs the command in a real pty.
    assert sandbox.tmux("new-session", "-d", "-s", "typing", "-x", "150", "-y", "40", command).returncode == 0
    wait_until(lambda: "New Jupyter password:" in pane_text(sandbox, "typing"), 60, "the first prompt")
    sandbox.tmux("send-keys", "-t", "typing", "typed at the prompt 123", "Enter")
    wait_until(lambda: "Type it again:" in pane_text(sandbox, "typing"), 30, "the second prompt")
    sandbox.tmux("send-keys", "-t", "typing", "typed at the prompt 123", "Enter")
    wait_until(lambda: "Public URL" in pane_text(sandbox, "typing"), 90, "serve to print the URL")
    screen = pane_text(sandbox, "typing")
    assert "typed at the prompt" not in screen, "the password was echoed"
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).login("typed at the prompt 123").status_code == 302
    config = (sandbox.home / ".jupyter" / "jupyter_server_config.json").read_text()
    assert "typed at the prompt" not in config


def test_existing_jupyter_config_is_kept_and_its_password_reused(sandbox: Sandbox) -> None:
    from jupyter_server.auth.security import passwd

    config_dir = sandbox.home / ".jupyter"
    (config_dir / "jupyter_server_config.d").mkdir(parents=True)
    extension = config_dir / "jupyter_server_config.d" / "my_extension.json"
    extension.write_text('{"ServerApp": {"jpserver_extensions": {"my_extension": false}}}\n')
    # As made by `jupyter server password`, plus a setting of the user's own.
    old_hash = passwd("the password I set last year")  # type: ignore[no-untyped-call]
    server_config = config_dir / "jupyter_server_config.json"
    server_config.write_text(
        json.dumps({"IdentityProvider": {"hashed_password": old_hash}, "ServerApp": {"iopub_data_rate_limit": 1e7}})
    )
    # A tutorial's advice, which must not publish Jupyter on every interface.
    (config_dir / "jupyter_server_config.py").write_text("c.ServerApp.ip = '0.0.0.0'\nc.ServerApp.port = 9999\n")

    first = sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None)
    assert first.returncode == 0, first.stderr
    after_first = server_config.read_bytes()
    data = json.loads(after_first)
    assert data["IdentityProvider"]["hashed_password"] == old_hash
    assert data["ServerApp"]["iopub_data_rate_limit"] == 1e7
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).login("the password I set last year").status_code == 302
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    ours = [f for f in listening if f[1].endswith(f":{sandbox.port:04X}") and f[3] == "0A"]
    assert ours
    assert all(f[1].startswith("0100007F:") for f in ours)

    second = sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None)
    assert second.returncode == 0
    assert server_config.read_bytes() == after_first, "a second serve changed Jupyter's config"
    assert extension.read_text() == '{"ServerApp": {"jpserver_extensions": {"my_extension": false}}}\n'


def test_password_command_and_restart(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach").returncode == 0
    changed = sandbox.run("password", "--stdin", input="a brand new password\n")
    assert changed.returncode == 0, changed.stderr
    assert "takes it at once" in changed.stdout
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).login("a brand new password").status_code == 302, "the running Jupyter kept the old one"
    assert sandbox.run("stop").returncode == 0
    again = sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None)
    assert again.returncode == 0, again.stderr
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).login("a brand new password").status_code == 302
    assert JupyterClient(url).login(PASSWORD).status_code == 401
    short = sandbox.run("password", "--stdin", input="short\n")
    assert short.returncode == 0
    assert "12 or more" in short.stderr


def test_logs_show_jupyter_and_the_keeper(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach").returncode == 0
    result = sandbox.run("logs", "-n", "200")
    assert result.returncode == 0
    assert "==> jupyter" in result.stdout
    assert "Jupyter Server" in result.stdout
    assert "==> tunnel" in result.stdout
    assert "tunnel open: http://" in result.stdout
    follow = subprocess.Popen(
        [sys.executable, "-m", "remote_agent", "logs", "-n", "0", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
        env=sandbox.environ(),
        cwd=sandbox.notebooks,
    )
    followed: list[str] = []
    # Read on a thread: a readline() inside the poll would block past its deadline.
    reader = threading.Thread(target=lambda: followed.extend(follow.stdout or []), daemon=True)
    reader.start()
    try:
        agent = sandbox.tunnel_state()["agent_pid"]
        os.kill(agent, 9)
        wait_until(lambda: any("[tunnel]" in line for line in list(followed)), 30, "a followed line")
    finally:
        follow.kill()
        follow.wait(10)


def test_stop_tunnel_only_keeps_jupyter_and_kernels(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach").returncode == 0
    url = sandbox.run("url").stdout.strip()
    client = JupyterClient(url)
    assert client.login(PASSWORD).status_code == 302
    kernel = client.start_kernel()
    assert client.execute(kernel, "y = 7") == ""
    jupyter_pid = sandbox.jupyter_record()["pid"]
    result = sandbox.run("stop", "--tunnel-only")
    assert result.returncode == 0
    assert pid_alive(jupyter_pid)
    assert not sandbox.fake.live_agent_pids()
    assert sandbox.run("url").returncode == 3
    assert sandbox.run("serve", "--detach").returncode == 0
    new_url = sandbox.run("url").stdout.strip()
    again = JupyterClient(new_url)
    assert again.login(PASSWORD).status_code == 302
    assert again.execute(kernel, "print(y)") == "7\n"


def test_doctor(sandbox: Sandbox) -> None:
    healthy = sandbox.run("doctor")
    assert healthy.returncode == 0, healthy.stdout
    assert "ok   tmux" in healthy.stdout
    assert "ngrok version 3" in healthy.stdout
    missing = sandbox.run("doctor", PYNGROK_NGROK_PATH="/no/such/ngrok")
    assert missing.returncode == 4
    assert "fix:" in missing.stdout
    env_file = sandbox.notebooks / ".env"
    env_file.write_text("JUPYTER_PORT=8899\n")
    env_file.chmod(0o644)
    exposed = sandbox.run("doctor", JUPYTER_PORT=None)
    assert exposed.returncode == 2
    assert f"chmod 600 {env_file}" in exposed.stdout
    no_password = sandbox.run("doctor", JUPYTER_PASSWORD=None)
    assert no_password.returncode == 2
    assert "remote-agent password" in no_password.stdout


def test_attach_opens_the_session_on_a_terminal(sandbox: Sandbox) -> None:
    assert sandbox.run("attach").returncode == 3
    assert sandbox.run("serve", "--detach").returncode == 0
    assert sandbox.run("attach").returncode == 2, "attach without a terminal must say so"
    # `script` gives the command a real pty, as an SSH session would.
    proc = subprocess.Popen(
        ["script", "-qfc", f"{sys.executable} -m remote_agent attach", "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=sandbox.environ(TERM="xterm"),
        cwd=sandbox.notebooks,
    )
    try:
        wait_until(
            lambda: "remote-agent" in sandbox.tmux("list-clients", "-F", "#{session_name}").stdout.split(),
            30,
            "a terminal attached to the remote-agent session",
        )
    finally:
        proc.kill()
        proc.wait(10)


def test_a_changed_password_in_env_file_takes_effect_at_the_next_start(sandbox: Sandbox) -> None:
    env_file = sandbox.notebooks / ".env"
    env_file.write_text("JUPYTER_PASSWORD=the first password 1\n")
    env_file.chmod(0o600)
    assert sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None).returncode == 0
    assert sandbox.run("stop").returncode == 0
    # Unchanged .env: the next start trusts the check it made (no argon2), and the password still works.
    assert sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None).returncode == 0
    assert JupyterClient(sandbox.run("url").stdout.strip()).login("the first password 1").status_code == 302
    assert sandbox.run("stop").returncode == 0
    env_file.write_text("JUPYTER_PASSWORD=the second password 2\n")
    assert sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None).returncode == 0
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).login("the second password 2").status_code == 302
    assert JupyterClient(url).login("the first password 1").status_code == 401
    marker = (sandbox.state_dir / "password-checked.json").read_text()
    assert "second" not in marker
    assert "first" not in marker
