"""Test harness: each test gets a private HOME, tmux server, Jupyter port and fake ngrok agent.

Everything a test starts is found by pid and killed in the fixture's finalizer: the
tmux server and all its descendants (Jupyter, kernels, the keeper, agents), plus any
agent the fake knows of.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyenvs
import pytest
from fakeagent import FakeNgrok

from remote_agent.core import procs

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
TOKEN = "2fakeTokenForTests_abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# The harness finds processes the way the product does, by /proc (see remote_agent.core.procs).
pid_alive = procs.is_alive
descendants = procs.descendants


class Following:
    """A `serve` that keeps running; its output is collected line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err_lines), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in self.lines[start:]:
                if m := regex.search(line):
                    return m
            if self.proc.poll() is not None and not self._threads[0].is_alive():
                raise AssertionError(
                    f"serve exited ({self.proc.returncode}) before printing {pattern!r}:\n"
                    + "\n".join(self.lines + self.err_lines)
                )
            return None

        result: re.Match[str] = wait_until(found, timeout, f"serve to print {pattern!r}")
        return result

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@dataclass
class Sandbox:
    root: Path
    fake: FakeNgrok
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.notebooks = self.home / "notebooks"
        self.tmux_dir = self.root / "tmux"
        for d in (self.home, self.notebooks, self.tmux_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.home / ".local" / "state" / "remote-agent"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTER_", "XDG_", "NGROK_", "REMOTE_AGENT_", "PYNGROK_", "SSH_", "TMUX", "SUDO_"))
        }
        env.update(
            HOME=str(self.home),
            TMUX_TMPDIR=str(self.tmux_dir),
            JUPYTER_PORT=str(self.port),
            JUPYTER_PASSWORD=PASSWORD,
            NGROK_AUTHTOKEN=TOKEN,
            PYNGROK_NGROK_PATH=str(self.fake.path),
            PYTHONUNBUFFERED="1",
        )
        self.env = env
        self._followers: list[Following] = []

    def environ(self, **changes: str | None) -> dict[str, str]:
        env = dict(self.env)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
        env: dict[str, str | None] | None = None,
        **more_env: str | None,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m remote_agent ARGS` in the sandbox; keyword arguments change its environment."""
        return subprocess.run(
            [sys.executable, "-m", "remote_agent", *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or self.notebooks,
            env=self.environ(**(env or {}), **more_env),
            check=False,
        )

    def follow(self, *args: str, **env: str | None) -> Following:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remote_agent", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.notebooks,
            env=self.environ(**env),
        )
        following = Following(proc)
        self._followers.append(following)
        return following

    def tunnel_state(self) -> dict[str, Any]:
        import json

        try:
            data: dict[str, Any] = json.loads((self.state_dir / "tunnel.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def kill_agent_and_wait_for_reopen(self, timeout: float = 30.0) -> str:
        """SIGKILL the tunnel's agent, wait until the keeper has a new one up; the public URL then."""
        killed = self.tunnel_state()["agent_pid"]
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: self.tunnel_state().get("status") == "up" and self.tunnel_state().get("agent_pid") != killed,
            timeout,
            "the keeper to reopen the tunnel",
        )
        return str(self.tunnel_state()["public_url"])

    def jupyter_record(self) -> dict[str, Any]:
        import json

        data: dict[str, Any] = json.loads((self.state_dir / "jupyter.json").read_text())
        return data

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", *args], capture_output=True, text=True, env=self.environ(), check=False, timeout=10
        )

    def tmux_server_pid(self) -> int | None:
        out = self.tmux("display-message", "-p", "#{pid}")
        return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else None

    def cleanup(self) -> None:
        for following in self._followers:
            if following.proc.poll() is None:
                following.proc.kill()
                following.proc.wait(10)
        server = self.tmux_server_pid()
        pids = [*descendants(server), server] if server else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.fake.kill_all()
        for pid in pids:
            wait_until(lambda p=pid: not pid_alive(p), 10, f"pid {pid} to end")  # type: ignore[misc]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    fake = FakeNgrok(tmp_path / "ngrok")
    box = Sandbox(tmp_path, fake)
    try:
        yield box
    finally:
        box.cleanup()


@pytest.fixture(scope="session")
def python_envs(tmp_path_factory: pytest.TempPathFactory) -> pyenvs.PythonEnvs:
    """Real venvs and a conda-shaped prefix for the kernel tests, built once per run (see pyenvs.py)."""
    return pyenvs.build(tmp_path_factory.mktemp("python-envs"))


def serving_sandbox(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Sandbox]:
    """One `serve --detach` for a whole module: Jupyter starts once (the expensive part)."""
    root = tmp_path_factory.mktemp(name)
    sandbox = Sandbox(root, FakeNgrok(root / "ngrok"))
    try:
        result = sandbox.run("serve", "--detach")
        assert result.returncode == 0, result.stderr
        yield sandbox
    finally:
        sandbox.cleanup()
