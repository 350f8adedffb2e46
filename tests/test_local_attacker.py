"""Another process on the same machine, as an attacker would use it: the ngrok agent's local API.

The agent's API (loopback, no authentication, as ngrok documents it) lets any local process
read the endpoint's traffic policy and replace the endpoint: without the edge's basic auth,
or forwarding to a listener of its own. The keeper must notice and put its own endpoint back.
Only the ngrok cloud is played by the fake agent (tests/fakeagent), which answers its local
API as the real agent does.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import PASSWORD, Sandbox, wait_until
from jupyter_client import JupyterClient

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"
BASIC_USER, BASIC_PASSWORD = "ana", "edge-pass-4217"
NAME = "remote-agent"


def listening_loopback_ports() -> list[int]:
    """What every local user can read: the TCP ports listening on 127.0.0.1 (/proc/net/tcp)."""
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, state = fields[1], fields[3]
        if state == "0A" and address.startswith("0100007F:"):
            ports.append(int(address.split(":")[1], 16))
    return ports


def call(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 2.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def find_agent_api(public_url: str) -> str:
    """Try each listening loopback port for an ngrok agent API that serves this public URL."""
    for port in listening_loopback_ports():
        base = f"http://127.0.0.1:{port}"
        try:
            listed = call("GET", f"{base}/api/endpoints", timeout=0.3)
        except (OSError, ValueError, http.client.HTTPException):  # not an HTTP server, or not this one
            continue
        endpoints = listed.get("endpoints") if isinstance(listed, dict) else None
        if isinstance(endpoints, list) and any(e.get("url") == public_url for e in endpoints):
            return base
    raise AssertionError(f"no agent API on a loopback port serves {public_url}")


def replace_endpoint(api: str, **changes: Any) -> None:
    """Delete the keeper's endpoint and create one of our own under its name and URL."""
    current = call("GET", f"{api}/api/endpoints/{NAME}")
    spec = {"name": NAME, "upstream": {"url": current["upstream"]["url"]}, "traffic_policy": current["traffic_policy"]}
    spec.update(changes)
    call("DELETE", f"{api}/api/endpoints/{NAME}")
    call("POST", f"{api}/api/endpoints", spec)


class Listener:
    """The attacker's own web server on a loopback port: it would collect Jupyter logins."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
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
                client.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nimpostor")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def protected_and_reaches_jupyter(url: str) -> bool:
    """Anonymous visitors get the edge's 401; with basic auth, Jupyter answers (not an impostor)."""
    client = JupyterClient(url)  # connects to 127.0.0.1 with the public Host, as a browser does
    client.session.headers["ngrok-skip-browser-warning"] = "1"
    try:
        anonymous = client.get("/api")
        client.session.auth = (BASIC_USER, BASIC_PASSWORD)
        with_auth = client.get("/api")
    except requests.RequestException:
        return False
    return anonymous.status_code == 401 and with_auth.status_code == 200 and "version" in with_auth.text


def test_keeper_restores_an_endpoint_replaced_through_the_agent_api(sandbox: Sandbox) -> None:
    serve = sandbox.follow(NGROK_BASIC_AUTH=f"{BASIC_USER}:{BASIC_PASSWORD}")
    url = serve.wait_for(URL_LINE, timeout=90)[1]
    assert protected_and_reaches_jupyter(url)
    # At rest, the endpoint the keeper opened matches what it set: health checks pass, nothing reopens.
    sandbox.fake.set_control(record_api_calls=True)
    agent_pid = sandbox.tunnel_state()["agent_pid"]
    wait_until(
        lambda: sum(1 for e in sandbox.fake.events() if e["event"] == "api_call" and e["pid"] == agent_pid) >= 3,
        30,
        "three health checks of the agent",
    )
    assert sandbox.tunnel_state()["reopened"] == 0
    assert sandbox.tunnel_state()["agent_pid"] == agent_pid
    api = find_agent_api(url)

    # 1. The same endpoint without the edge's basic auth: Jupyter's login page open to scanners.
    start = len(serve.lines)
    replace_endpoint(api, traffic_policy="")
    serve.wait_for(r"Tunnel down: another local process changed the endpoint", timeout=20, start=start)
    serve.wait_for(r"Tunnel back at the same URL", timeout=30, start=start)
    wait_until(lambda: protected_and_reaches_jupyter(url), 20, "the endpoint to ask for basic auth again")
    state = sandbox.tunnel_state()
    assert re.search(r"no [^)]*basic-auth[^)]* any more", state["last_error"]), state["last_error"]
    assert "another local process changed the endpoint" in sandbox.run("status").stdout

    # 2. The same policy, forwarding to the attacker's listener: logins would go there.
    impostor = Listener()
    try:
        api = find_agent_api(url)  # a reopened endpoint comes with a new agent and a new API port
        start = len(serve.lines)
        replace_endpoint(api, upstream={"url": f"http://127.0.0.1:{impostor.port}"})
        serve.wait_for(r"Tunnel down: another local process changed the endpoint", timeout=20, start=start)
        serve.wait_for(r"Tunnel back at the same URL", timeout=30, start=start)
        wait_until(lambda: protected_and_reaches_jupyter(url), 20, "the endpoint to forward to Jupyter again")
        seen_by_impostor = impostor.connections
        for _ in range(3):
            assert protected_and_reaches_jupyter(url)
        assert impostor.connections == seen_by_impostor, "the restored endpoint still forwards to the impostor"
    finally:
        impostor.close()
    assert f"forwards to 127.0.0.1:{impostor.port} instead of Jupyter" in sandbox.tunnel_state()["last_error"]

    keeper_log = (sandbox.state_dir / "keeper.log").read_text()
    assert keeper_log.count("another local process changed the endpoint") >= 2
    assert BASIC_PASSWORD not in keeper_log
    assert BASIC_PASSWORD not in "\n".join(serve.lines + serve.err_lines)
    assert PASSWORD not in keeper_log


@pytest.fixture
def other_users() -> Iterator[tuple[str, str]]:
    """Two more accounts on this machine: a person who can log in, and a service account that cannot."""
    suffix = secrets.token_hex(3)
    person, service = f"ra-guest-{suffix}", f"ra-svc-{suffix}"
    made = []
    try:
        for name, shell in ((person, "/bin/bash"), (service, "/usr/sbin/nologin")):
            subprocess.run(["useradd", "--create-home", "--shell", shell, name], check=True, timeout=30)
            made.append(name)
        yield person, service
    finally:
        for name in made:
            subprocess.run(["userdel", "--remove", name], check=False, capture_output=True, timeout=30)


def test_doctor_says_who_else_can_log_in_and_what_they_can_reach(
    sandbox: Sandbox, other_users: tuple[str, str]
) -> None:
    person, service = other_users
    result = sandbox.run("doctor", NGROK_BASIC_AUTH=f"{BASIC_USER}:{BASIC_PASSWORD}")
    assert result.returncode == 0, result.stdout + result.stderr
    note = next(line for line in result.stdout.splitlines() if "other accounts can log in" in line)
    assert person in note
    assert service not in note, "an account without a login shell cannot log in"
    assert "the ngrok agent's local API, which needs no login: it shows the edge's basic-auth password" in note
    assert f"Jupyter's port 127.0.0.1:{sandbox.port}" in note
    assert BASIC_PASSWORD not in result.stdout


def plant_interpreter(prefix: Path, marker: Path) -> Path:
    """A venv whose python leaves a mark when run, then behaves as Python (so discovery would offer it)."""
    (prefix / "bin").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    python = prefix / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$(id -un) ran $0" >> {marker}\nexec /usr/bin/python3 "$@"\n')
    python.chmod(0o755)
    return python


def test_kernels_never_run_an_interpreter_another_user_could_have_planted(sandbox: Sandbox) -> None:
    marker = sandbox.root / "ran-planted-python"
    # Another user's project in a shared notebook directory, its venv theirs.
    theirs = plant_interpreter(sandbox.notebooks / "shared" / ".venv", marker)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(sandbox.notebooks / "shared")], check=True)
    # The user's own venv, but its bin/ open to every user: anyone could have swapped the python.
    opened = plant_interpreter(sandbox.notebooks / "scratch" / ".venv", marker)
    opened.parent.chmod(0o777)

    listed = sandbox.run("kernels", "--json")
    assert listed.returncode == 0, listed.stderr
    shown = sandbox.run("kernels")
    assert shown.returncode == 0, shown.stderr
    assert not marker.exists(), f"a planted interpreter was run: {marker.read_text()}"

    rows = {row["python"]: row for row in json.loads(listed.stdout)["kernels"]}
    assert rows[str(theirs)]["offered"] is False
    assert rows[str(theirs)]["skipped"] == f"{theirs} is owned by nobody"
    assert rows[str(opened)]["skipped"] == f"{opened.parent} can be changed by every user"
    assert all(row["skipped"] is None for python, row in rows.items() if python not in (str(theirs), str(opened)))
    assert "never run, because another user could have changed them" in shown.stdout
    assert f"not run: {theirs} is owned by nobody" in shown.stdout
    assert f"if you trust it: remote-agent kernels add {theirs}" in shown.stdout

    # Asked for by name, it is run: that is the user's decision.
    added = sandbox.run("kernels", "add", str(theirs))
    assert marker.exists(), "kernels add runs the interpreter it was given"
    assert "is owned by nobody" in added.stderr
