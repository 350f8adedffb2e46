"""serve as a user lives it: log in through the public URL, run code, lose the agent, come back.

Real tmux, real Jupyter, real kernels; only the ngrok cloud is replaced, by the fake
agent in tests/fakeagent, because the real service cannot be reached from here.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from conftest import PASSWORD, Sandbox, descendants, pid_alive, wait_until
from jupyter_client import JupyterClient

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"


def test_serve_login_kernel_survives_agent_death_and_stop_cleans_up(sandbox: Sandbox) -> None:
    serve = sandbox.follow()
    first_url = serve.wait_for(URL_LINE, timeout=90)[1]
    jupyter_pid = sandbox.jupyter_record()["pid"]
    assert pid_alive(jupyter_pid)

    url = sandbox.run("url")
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip() == first_url

    # Through the public URL, as a collaborator: a wrong password is refused, the right one works.
    intruder = JupyterClient(first_url)
    assert intruder.login("not the password").status_code == 401
    assert intruder.get("/api/contents").status_code == 403

    user = JupyterClient(first_url)
    assert user.login(PASSWORD).status_code == 302
    kernel = user.start_kernel()
    assert user.execute(kernel, "x = 42\nprint('set', x)") == "set 42\n"

    # The agent dies: it comes back at the same URL (the account's dev domain), and serve says so.
    agent_pid = sandbox.tunnel_state()["agent_pid"]
    os.kill(agent_pid, signal.SIGKILL)
    serve.wait_for(rf"Tunnel back at the same URL  {re.escape(first_url)}$", timeout=30)
    new_url = first_url
    assert not [line for line in serve.lines if "New public URL" in line]
    assert sandbox.run("url").stdout.strip() == new_url

    # Through the URL, the same kernel still holds x.
    again = JupyterClient(new_url)
    assert again.login(PASSWORD).status_code == 302
    assert again.execute(kernel, "print(x)") == "42\n"

    # A second serve, as after reconnecting: same Jupyter, the current URL (the benchmark times it).
    second = sandbox.run("serve", "--detach", timeout=60)
    assert second.returncode == 0, second.stderr
    assert f"already running (pid {jupyter_pid})" in second.stdout
    assert new_url in second.stdout
    assert sandbox.jupyter_record()["pid"] == jupyter_pid

    # stop: nothing left behind.
    kernel_pids = descendants(jupyter_pid)
    keeper_pid = sandbox.tunnel_state()["keeper_pid"]
    agent_pid = sandbox.tunnel_state()["agent_pid"]
    server_pid = sandbox.tmux_server_pid()
    stop = sandbox.run("stop")
    assert stop.returncode == 0, stop.stderr
    for pid in [jupyter_pid, keeper_pid, agent_pid, *kernel_pids]:
        assert not pid_alive(pid), f"pid {pid} still runs after stop"
    assert sandbox.tmux("has-session", "-t", "remote-agent").returncode != 0
    assert server_pid is not None
    wait_until(lambda: not pid_alive(server_pid), 10, "the tmux server to exit")
    runtime = sandbox.home / ".local" / "share" / "jupyter" / "runtime"
    assert not list(runtime.glob("jpserver-*")), "stale Jupyter runtime files"
    assert not sandbox.fake.live_agent_pids()
    assert serve.proc.wait(10) == 0
    assert sandbox.run("url").returncode == 3


def test_ctrl_c_and_hangup_leave_everything_running(sandbox: Sandbox) -> None:
    serve = sandbox.follow()
    url = serve.wait_for(URL_LINE, timeout=90)[1]
    assert serve.stop(signal.SIGINT) == 130
    hangup = sandbox.follow()
    hangup.wait_for(URL_LINE, timeout=30)
    hangup.stop(signal.SIGHUP)
    status = sandbox.run("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert sandbox.run("url").stdout.strip() == url


def test_json_events(sandbox: Sandbox) -> None:
    import json

    serve = sandbox.follow("--json")
    line = serve.wait_for(r'"event": "ready"', timeout=90).string
    ready = json.loads(line)
    assert ready["public_url"].startswith("http://")
    assert ready["local_url"] == f"http://127.0.0.1:{sandbox.port}/"
    assert ready["ssh_command"].startswith("ssh ")
    assert ready["jupyter_pid"] == sandbox.jupyter_record()["pid"]
    assert "at" in ready
    os.kill(sandbox.tunnel_state()["agent_pid"], signal.SIGKILL)
    changed = json.loads(serve.wait_for(r'"event": "tunnel_up"', timeout=30).string)
    assert changed["public_url"] == ready["public_url"], "back at the account's dev domain"
    assert not [x for x in serve.lines if '"url_changed"' in x]
    down = [json.loads(x) for x in serve.lines if '"tunnel_down"' in x]
    assert down
    assert down[0]["error"]
    status = json.loads(sandbox.run("status", "--json").stdout)
    assert status["jupyter"] == {
        "running": True,
        "pid": ready["jupyter_pid"],
        "port": sandbox.port,
        "local_url": ready["local_url"],
        "kernels": 0,
        "restarts": 0,
        "last_restart": None,
        "restart_error": None,
        "collaboration": True,
        "notebooks": [],
    }
    tunnel = status["tunnel"]
    assert tunnel["provider"] == "ngrok"
    assert tunnel["running"] is True
    assert tunnel["public_url"] == changed["public_url"]
    assert tunnel["reopened"] == 1
    assert tunnel["since"]
    assert tunnel["last_error"]


def test_ssh_mode_without_token(sandbox: Sandbox) -> None:
    result = sandbox.run("serve", NGROK_AUTHTOKEN=None, SSH_CONNECTION="203.0.113.9 51234 198.51.100.7 2222")
    assert result.returncode == 0, result.stderr
    user = os.environ.get("USER") or __import__("getpass").getuser()
    assert (
        f"ssh -i ~/.ssh/KEY.pem -N -L 127.0.0.1:12345:127.0.0.1:{sandbox.port} -p 2222 {user}@198.51.100.7"
        in result.stdout
    )
    assert "NGROK_AUTHTOKEN" in result.stdout
    assert "Public URL" not in result.stdout
    assert not sandbox.fake.live_agent_pids()
    client = JupyterClient(f"http://127.0.0.1:{sandbox.port}/")
    assert client.login(PASSWORD).status_code == 302
    status = sandbox.run("status", "--json")
    assert status.returncode == 0
    assert '"provider": "ssh"' in status.stdout
    assert sandbox.run("url").returncode == 3


def test_jupyter_listens_on_loopback_only_and_password_is_hashed(sandbox: Sandbox) -> None:
    result = sandbox.run("serve", "--detach")
    assert result.returncode == 0, result.stderr
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    port_hex = f"{sandbox.port:04X}"
    ours = [line.split() for line in listening if line.split()[1].endswith(":" + port_hex)]
    assert ours
    assert all(fields[1].startswith("0100007F:") for fields in ours if fields[3] == "0A")
    config = (sandbox.home / ".jupyter" / "jupyter_server_config.json").read_text()
    assert "argon2:" in config
    assert PASSWORD not in config
    assert (sandbox.home / ".jupyter" / "jupyter_server_config.json").stat().st_mode & 0o777 == 0o600
