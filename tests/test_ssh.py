"""serve over real SSH, as a user runs it: `ssh -t server`, serve, the laptop closes, SSH in again.

A private sshd on 127.0.0.1 (tests/sshd.py) logs in to this machine with the sandbox's
HOME; the user's settings are in the project's .env, since sshd passes no environment on.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, Sandbox, descendants, free_port, pid_alive, wait_until
from jupyter_client import JupyterClient
from sshd import Sshd, running_sshd, serve_command, wait_for_port, write_user_dotenv

# The private sshd logs in as root (tests/sshd.py), which only root can arrange.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the private sshd needs root (it logs in as root)")

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"


@pytest.fixture
def server(sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sshd]:
    environment = {"HOME": str(sandbox.home), "TMUX_TMPDIR": str(sandbox.tmux_dir)}
    with running_sshd(tmp_path / "sshd", environment, request.node.name) as sshd:
        yield sshd


def test_serve_over_ssh_outlives_the_ssh_client(sandbox: Sandbox, server: Sshd) -> None:
    write_user_dotenv(sandbox, server)
    first = server.terminal(server.ssh_argv("-t", command=serve_command()))
    url = first.wait_for(URL_LINE, timeout=90)[1]
    first.wait_for("Following the tunnel")
    jupyter_pid = sandbox.jupyter_record()["pid"]
    remote_serve = server.remote_processes("-m", "remote_agent", "serve")
    assert len(remote_serve) == 1, remote_serve

    user = JupyterClient(url)
    assert user.login(PASSWORD).status_code == 302
    kernel = user.start_kernel()
    assert user.execute(kernel, "x = 42\nprint('set', x)") == "set 42\n"
    tunnel = sandbox.tunnel_state()
    running = [jupyter_pid, *descendants(jupyter_pid), tunnel["keeper_pid"], tunnel["agent_pid"]]

    # The laptop closes: the client vanishes, sshd hangs up the session, and serve stops following.
    first.kill()
    wait_until(lambda: not any(map(pid_alive, remote_serve)), 20, "the remote serve to end with its connection")
    for pid in running:
        assert pid_alive(pid), f"pid {pid} died with the SSH connection"
    assert sandbox.run("url").stdout.strip() == url

    # SSH in again: the same Jupyter, the current URL at once, and the kernel still holds x.
    started = time.monotonic()
    second = server.terminal(server.ssh_argv("-t", command=serve_command()))
    second.wait_for(URL_LINE, timeout=30)
    took = time.monotonic() - started
    assert f"already running (pid {jupyter_pid})" in second.text
    assert f"Public URL  {url}" in second.text
    assert took < 10, f"the second serve took {took:.1f} s"
    second.wait_for("Following the tunnel")
    assert sandbox.jupyter_record()["pid"] == jupyter_pid
    assert user.execute(kernel, "print(x)") == "42\n"


def test_ssh_port_forwarding_reaches_jupyter_as_printed(sandbox: Sandbox, server: Sshd) -> None:
    settings = write_user_dotenv(sandbox, server)
    served = server.terminal(server.ssh_argv("-t", command=serve_command("--tunnel", "ssh")))
    assert served.wait(90) == 0, served.text
    printed = served.wait_for(r"On your laptop: (ssh .*)")[1].strip()
    laptop_url = served.wait_for(r"then open (http://localhost:\d+/)")[1]

    # HOST and the port come from the SSH connection, the key and the laptop port from .env.
    argv = shlex.split(printed)
    laptop_port = int(settings["REMOTE_AGENT_LAPTOP_PORT"])
    assert argv == [
        "ssh",
        "-i",
        str(server.client_key),
        "-N",
        "-L",
        f"127.0.0.1:{laptop_port}:127.0.0.1:{sandbox.port}",
        "-p",
        str(server.port),
        "root@127.0.0.1",
    ]
    assert laptop_url == f"http://localhost:{laptop_port}/"

    # The tutorial's way, `ssh -N -L PORT:localhost:JUPYTER`, through the same sshd.
    tutorial_port = free_port()
    tutorial = server.background(server.ssh_argv("-N", "-L", f"{tutorial_port}:localhost:{sandbox.port}"))
    wait_for_port(tutorial_port, tutorial)
    page = JupyterClient(f"http://localhost:{tutorial_port}/").get("/login")
    assert page.status_code == 200
    assert 'name="password"' in page.text

    # The printed command, run as printed. Only -F is added: it stands for the laptop's ~/.ssh
    # (the server's host key as known, no prompts), which OpenSSH will not take from $HOME.
    laptop = server.background([argv[0], "-F", str(server.laptop_config), *argv[1:]])
    wait_for_port(laptop_port, laptop)
    client = JupyterClient(laptop_url)
    assert client.login("not the password").status_code == 401
    assert client.login(PASSWORD).status_code == 302
    assert client.get("/api/contents").status_code == 200
