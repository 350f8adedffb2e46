"""`connect` on the laptop, over the suite's real sshd: serve there, a forward that heals here.

The laptop is a Python 3.9 virtual environment (macOS's own python3 is 3.9) holding the
laptop side only, installed with the README's line; the server is this machine's sshd
with the sandbox's HOME, where the README's clone sits at ~/remote-agent.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, REPO, Following, Sandbox, free_port, pid_alive, wait_until
from jupyter_client import JupyterClient
from sshd import USER, Sshd, port_accepts, running_sshd, serve_command, wait_for_port, write_user_dotenv

from remote_agent.core import procs
from remote_agent.laptop import remote_serve

Completed = subprocess.CompletedProcess[str]
PYTHON39 = Path("/root/.pyenv/versions/3.9.18/bin/python3.9")
# Short keepalives: a frozen server end is noticed in about 3 s instead of 45.
FAST_KEEPALIVE = ("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")


def oldest_python() -> str:
    """The laptop's Python: 3.9, as macOS ships it (REMOTE_AGENT_TEST_PYTHON39 names another)."""
    for candidate in (os.environ.get("REMOTE_AGENT_TEST_PYTHON39"), str(PYTHON39), shutil.which("python3.9")):
        if candidate and Path(candidate).exists():
            check = [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 9))"]
            if subprocess.run(check, capture_output=True, check=False).returncode == 0:
                return candidate
    pytest.fail(
        "No Python 3.9 for the laptop side (macOS's own python3 is 3.9): install one "
        "(e.g. pyenv install 3.9) or set REMOTE_AGENT_TEST_PYTHON39 to its path.",
        pytrace=False,
    )


@pytest.fixture
def server(sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sshd]:
    # The README's clone on the server: ~/remote-agent with its .venv (this checkout's).
    (sandbox.home / "remote-agent").symlink_to(REPO)
    environment = {"HOME": str(sandbox.home), "TMUX_TMPDIR": str(sandbox.tmux_dir)}
    with running_sshd(tmp_path / "sshd", environment, request.node.name) as sshd:
        yield sshd


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Completed:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False)


def ssh_flags(server: Sshd) -> list[str]:
    return ["-F", str(server.laptop_config), "-i", str(server.client_key), "-p", str(server.port)]


def laptop_connect(
    server: Sshd, remote_agent: list[str], *flags: str, cwd: Path, env: dict[str, str] | None = None
) -> Following:
    proc = subprocess.Popen(
        [*remote_agent, "connect", f"{USER}@127.0.0.1", *ssh_flags(server), *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**server.laptop_env(), **(env or {})},
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    return Following(proc)


def events(connecting: Following) -> list[dict[str, Any]]:
    return [json.loads(line) for line in connecting.lines]


def wait_for_event(connecting: Following, name: str, after: int = 0, timeout: float = 60) -> dict[str, Any]:
    match = connecting.wait_for(f'"event": "{name}"', timeout=timeout, start=after)
    return dict(json.loads(match.string))


def forward_ssh(connecting: Following) -> int:
    """The `ssh -N -L` that connect holds."""
    found = [pid for pid in procs.descendants(connecting.proc.pid) if "-N" in procs.cmdline(pid)]
    assert len(found) == 1, found
    return found[0]


def install_laptop_side(server: Sshd, directory: Path) -> list[str]:
    """The README's line for the laptop: the package from the server's clone, into a 3.9 venv."""
    archive = directory / "remote-agent.tar.gz"
    fetch = server.ssh_argv(
        command="tar -C ~ --exclude=__pycache__ -czf - "
        "remote-agent/pyproject.toml remote-agent/README.md remote-agent/remote_agent"
    )
    with open(archive, "wb") as out:
        subprocess.run(fetch, stdout=out, check=True, env=server.laptop_env(), timeout=60)
    venv = directory / "laptop-venv"
    subprocess.run([oldest_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    pip = run([str(venv / "bin" / "pip"), "install", "-q", str(archive)])
    assert pip.returncode == 0, pip.stderr
    return [str(venv / "bin" / "remote-agent")]


def test_connect_from_a_python39_laptop_holds_a_forward_that_heals(
    sandbox: Sandbox, server: Sshd, tmp_path: Path
) -> None:
    write_user_dotenv(sandbox, server)
    laptop = install_laptop_side(server, tmp_path)
    version = run([laptop[0].replace("remote-agent", "python"), "-V"])
    assert version.stdout.startswith("Python 3.9"), version.stdout
    # The laptop install has no Jupyter: `connect --help` works, server commands say what to install.
    helped = run([*laptop, "connect", "--help"])
    assert helped.returncode == 0, helped.stderr
    assert "--local-port" in helped.stdout
    refused = run([*laptop, "status"])
    assert refused.returncode == 4, refused.stderr
    assert "remote-agent[server]" in refused.stderr

    # The laptop's own .env is none of the server's business: connect never reads it.
    laptop_dir = tmp_path / "laptop-project"
    laptop_dir.mkdir()
    (laptop_dir / ".env").write_text("JUPYTER_PORT=not-a-port\nNGROK_AUTHTOKEN=the-laptops-own\n")
    browser_log = tmp_path / "browser.log"
    browser = tmp_path / "fake-browser"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {browser_log}\n')
    browser.chmod(0o755)
    local_port = free_port()
    connecting = laptop_connect(
        server,
        laptop,
        "--json",
        "--local-port",
        str(local_port),
        "--remote-dir",
        "~/notebooks",
        "--tunnel",
        "ngrok",
        *FAST_KEEPALIVE,
        cwd=laptop_dir,
        env={"BROWSER": str(browser)},
    )
    connected = wait_for_event(connecting, "connected", timeout=120)
    local_url = f"http://localhost:{local_port}/"
    jupyter_pid = sandbox.jupyter_record()["pid"]
    assert connected["local_url"] == local_url
    assert connected["jupyter_pid"] == jupyter_pid
    assert connected["public_url"] == sandbox.tunnel_state()["public_url"]
    assert str(connected["public_url"]).startswith("http://")
    # The shell creates the file before echo writes to it: wait for the line itself.
    wait_until(lambda: browser_log.exists() and browser_log.read_text().endswith("\n"), 20, "the browser to open")
    assert browser_log.read_text() == f"{local_url}\n"

    user = JupyterClient(local_url)
    assert user.login(PASSWORD).status_code == 302
    kernel = user.start_kernel()
    assert user.execute(kernel, "x = 42\nprint('set', x)") == "set 42\n"

    # The forward's ssh dies: connect reopens it on the same port; the kernel still holds x.
    first_ssh = forward_ssh(connecting)
    os.kill(first_ssh, signal.SIGKILL)
    seen = len(connecting.lines)
    down = wait_for_event(connecting, "forward_down", after=seen)
    assert "signal 9" in down["error"]
    assert wait_for_event(connecting, "forward_up", after=seen)["local_url"] == local_url
    assert user.execute(kernel, "print(x)") == "42\n"

    # The server end of the connection freezes (as for a sleeping laptop, nothing comes back),
    # longer than the keepalive window: ssh gives up on it and connect opens a new connection.
    frozen = [pid for pid in server.sessions() if procs.cmdline(pid)[:1] and "sshd" in procs.cmdline(pid)[0]]
    assert frozen, "no sshd session for the forward"
    seen = len(connecting.lines)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        down = wait_for_event(connecting, "forward_down", after=seen)
        wait_for_event(connecting, "forward_up", after=seen)
    finally:
        for pid in frozen:
            if pid_alive(pid):
                os.kill(pid, signal.SIGCONT)
    assert user.execute(kernel, "print(x)") == "42\n"
    assert browser_log.read_text() == f"{local_url}\n", "the browser was opened again"

    # Ctrl-C (to the whole foreground job, as a terminal sends it) ends the forward only.
    os.killpg(connecting.proc.pid, signal.SIGINT)
    assert connecting.proc.wait(30) == 130
    assert not port_accepts(local_port)
    assert pid_alive(jupyter_pid)
    assert sandbox.jupyter_record()["pid"] == jupyter_pid
    assert "Jupyter keeps running" in "\n".join(connecting.err_lines)
    assert all(set(e) >= {"event", "at"} for e in events(connecting)), "stdout holds only JSON events"


def test_without_a_public_url_connect_still_forwards_and_says_why(
    sandbox: Sandbox, server: Sshd, tmp_path: Path
) -> None:
    """ngrok refuses the server's token: serve fails there, Jupyter runs, connect forwards to it.

    Also: human output, and --remote-command as the way to run remote-agent there.
    """
    write_user_dotenv(sandbox, server, NGROK_AUTHTOKEN="bad-token-for-the-fake-agent")
    local_port = free_port()
    connecting = laptop_connect(
        server,
        [sys.executable, "-m", "remote_agent"],
        "--no-browser",
        "--local-port",
        str(local_port),
        "--remote-dir",
        "~/notebooks",
        "--remote-command",
        f"{sys.executable} -m remote_agent",
        cwd=tmp_path,
    )
    connecting.wait_for(rf"here at http://localhost:{local_port}/", timeout=120)
    assert not any("Public URL" in line for line in connecting.lines)
    relayed = "\n".join(connecting.err_lines)
    assert "ERR_NGROK_105" in relayed  # serve's own reason, relayed from the server
    assert "bad-token-for-the-fake-agent" not in relayed
    assert "but Jupyter runs there: forwarding to it all the same" in relayed
    assert JupyterClient(f"http://localhost:{local_port}/").login(PASSWORD).status_code == 302

    # The server goes away for a while (sshd and its connections end, as when the network is
    # gone): connect says so, and how long until each next try, then comes back by itself.
    def said(text: str) -> int:
        return sum(text in line for line in connecting.err_lines)

    assert server.proc is not None
    sessions = server.sessions()
    server.proc.kill()
    server.proc.wait(10)
    for pid in sessions:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: said("Connection refused); next try in") >= 2, 60, "connect to say it keeps trying")
    assert said("Forward down:") == 1
    assert said("Forward up again") == 0
    server.start()
    wait_until(lambda: said("Forward up again"), 60, "the forward to be back")
    assert JupyterClient(f"http://localhost:{local_port}/").login(PASSWORD).status_code == 302

    # Jupyter is stopped on the server (as by a reboot): connect runs serve there again.
    first_jupyter = sandbox.jupyter_record()["pid"]
    assert sandbox.run("stop").returncode == 0
    wait_until(lambda: said("Forward up again") == 2, 90, "the forward to Jupyter started again")
    assert said("Jupyter does not answer on 127.0.0.1: running serve there again") == 1
    assert sandbox.jupyter_record()["pid"] != first_jupyter
    assert JupyterClient(f"http://localhost:{local_port}/").login(PASSWORD).status_code == 302
    # `kill` (SIGTERM to connect alone) ends it as Ctrl-C does, its ssh with it.
    ssh = forward_ssh(connecting)
    assert connecting.stop(signal.SIGTERM) == 130
    wait_until(lambda: not pid_alive(ssh), 10, "the forward's ssh to end")
    assert not port_accepts(local_port)
    assert pid_alive(sandbox.jupyter_record()["pid"])


def test_unreachable_host_exits_5(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    laptop = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = run(
        [sys.executable, "-m", "remote_agent", "connect", "ubuntu@127.0.0.1", "-p", str(closed), "--no-browser"],
        cwd=tmp_path,
        env=laptop,
    )
    assert done.returncode == 5, done.stderr
    assert "Cannot reach ubuntu@127.0.0.1" in done.stderr
    assert "Connection refused" in done.stderr  # ssh's own words, relayed


def test_a_taken_local_port_exits_2_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            [sys.executable, "-m", "remote_agent", "connect", "ubuntu@203.0.113.7", "--local-port", str(port)],
            cwd=tmp_path,
        )
    assert done.returncode == 2, done.stderr
    assert f"Local port {port} is taken" in done.stderr
    assert "--local-port" in done.stderr


def test_remote_agent_not_found_says_to_pass_remote_command(sandbox: Sandbox, server: Sshd, tmp_path: Path) -> None:
    (sandbox.home / "remote-agent").unlink()  # no clone in the usual place, nothing on PATH
    done = run(
        [sys.executable, "-m", "remote_agent", "connect", f"{USER}@127.0.0.1", *ssh_flags(server), "--no-browser"],
        cwd=tmp_path,
        env=server.laptop_env(),
    )
    assert done.returncode == 5, done.stderr
    assert "remote-agent was not found on 127.0.0.1" in done.stderr
    assert "--remote-command" in done.stderr


def test_no_ssh_on_the_laptop_exits_4(tmp_path: Path) -> None:
    done = run(
        [sys.executable, "-m", "remote_agent", "connect", "ubuntu@203.0.113.7", "--no-browser"],
        cwd=tmp_path,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},  # a PATH without ssh
    )
    assert done.returncode == 4, done.stderr
    assert "ssh is not installed" in done.stderr


def test_remote_agent_is_found_in_the_usual_places_in_order(tmp_path: Path) -> None:
    """The script connect sends, run by sh here: the README's clone first, then PATH, then ~/.local/bin."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    places = {
        "clone": home / "remote-agent" / ".venv" / "bin" / "remote-agent",
        "path": bin_dir / "remote-agent",
        "user": home / ".local" / "bin" / "remote-agent",
    }
    for name, path in places.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        path.chmod(0o755)
    env = {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    for name, path in places.items():
        ran = run(["sh", "-c", remote_serve.script(None, None, "ngrok")], cwd=home, env=env)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == f"{name} serve --detach --json --tunnel ngrok"
        path.unlink()  # next: the place after it
    ran = run(["sh", "-c", remote_serve.script("~/nowhere", None, None)], cwd=home, env=env)
    assert ran.returncode == 2
    assert ran.stdout.strip() == "#connect no-dir"


def test_a_first_forward_that_fails_at_once_is_reported_not_retried(server: Sshd, tmp_path: Path) -> None:
    """The local port is taken after connect looked (another program was quicker): ssh cannot listen.

    serve is played by a script here: what is tested is the laptop's side, which gives up at once.
    """
    go = tmp_path / "go"
    fake_serve = tmp_path / "fake-serve"
    ready = {"event": "ready", "local_url": "http://127.0.0.1:8888/", "public_url": None, "jupyter_pid": None}
    fake_serve.write_text(f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho '{json.dumps(ready)}'\n")
    fake_serve.chmod(0o755)
    local_port = free_port()
    connecting = laptop_connect(
        server,
        [sys.executable, "-m", "remote_agent"],
        "--no-browser",
        "--local-port",
        str(local_port),
        "--remote-command",
        str(fake_serve),
        cwd=tmp_path,
    )
    wait_until(lambda: any("Starting remote-agent" in line for line in connecting.err_lines), 30, "connect")
    with socket.socket() as quicker, socket.socket(socket.AF_INET6) as quicker6:
        # Both of localhost's addresses, as ssh listens on both.
        quicker.bind(("127.0.0.1", local_port))
        quicker6.bind(("::1", local_port))
        quicker.listen()
        quicker6.listen()
        go.touch()
        assert connecting.proc.wait(60) == 5
    said = "\n".join(connecting.err_lines)
    assert f"The SSH forward to {USER}@127.0.0.1 failed at once" in said
    assert "Could not request local forwarding" in said  # ssh's words
    assert "Forward down" not in said
    assert "next try" not in said


# Debian's /etc/hosts: `localhost` is 127.0.0.1 and ::1, and getaddrinfo puts ::1 first.
DEBIAN_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"


class Impostor:
    """Another local user's listener on [::1]:PORT, where Jupyter (on 127.0.0.1 only) leaves the port free."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind(("::1", port))
        self.sock.listen(16)
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with client:
                page = b'<form><input name="password"></form>'
                client.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def test_forwards_reach_jupyter_not_a_listener_on_ipv6_loopback(sandbox: Sandbox, tmp_path: Path) -> None:
    (sandbox.home / "remote-agent").symlink_to(REPO)
    environment = {"HOME": str(sandbox.home), "TMUX_TMPDIR": str(sandbox.tmux_dir)}
    impostor = Impostor(sandbox.port)
    try:
        with running_sshd(tmp_path / "sshd", environment, "ipv6-impostor", hosts=DEBIAN_HOSTS) as server:
            settings = write_user_dotenv(sandbox, server)
            # The printed command, run as printed (with -F for the laptop's ~/.ssh).
            served = server.terminal(server.ssh_argv("-t", command=serve_command("--tunnel", "ssh")))
            assert served.wait(90) == 0, served.text
            printed = shlex.split(served.wait_for(r"On your laptop: (ssh .*)")[1].strip())
            hint = server.background([printed[0], "-F", str(server.laptop_config), *printed[1:]])
            laptop_port = int(settings["REMOTE_AGENT_LAPTOP_PORT"])
            wait_for_port(laptop_port, hint)
            assert JupyterClient(f"http://localhost:{laptop_port}/").login(PASSWORD).status_code == 302
            assert impostor.connections == 0, "the printed ssh -L forwarded to the listener on [::1]"

            # connect's forward, from a laptop (this checkout stands in for the laptop's install).
            local_port = free_port()
            connecting = laptop_connect(
                server,
                [sys.executable, "-m", "remote_agent"],
                "--json",
                "--no-browser",
                "--local-port",
                str(local_port),
                "--remote-dir",
                "~/notebooks",
                cwd=tmp_path,
            )
            try:
                wait_for_event(connecting, "connected", timeout=120)
                assert JupyterClient(f"http://localhost:{local_port}/").login(PASSWORD).status_code == 302
                assert impostor.connections == 0, "connect's ssh -L forwarded to the listener on [::1]"
            finally:
                connecting.stop()
    finally:
        impostor.close()
