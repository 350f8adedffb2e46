"""Hold `ssh -L 127.0.0.1:LOCAL:127.0.0.1:PORT` open: notice a drop, reopen it on the same local port.

ssh's keepalives (ServerAliveInterval/CountMax) end a forward whose connection died; a probe
through the local port (an HTTP request to Jupyter's /api) notices sooner, also when the
laptop wakes from sleep (the wall clock jumps while the monotonic one stood still), and
tells "Jupyter answers" from "ssh listens but nothing comes back".
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from remote_agent.core.errors import BadInput, RemoteAgentError, StartFailed
from remote_agent.laptop.forward_policy import GiveUp, ReconnectPolicy
from remote_agent.laptop.ssh_client import Forward, SshTarget

PROBE_INTERVAL = 10.0  # seconds between probes while the forward is up
PROBE_TIMEOUT = 8.0  # through a forward that worked: the network may be slow
COMING_UP_TIMEOUT = 3.0  # while it comes up, look again soon rather than wait on one look
FAILED_PROBES = 2  # in a row, before a live ssh is taken for a dead forward
PROBE_AGAIN = 0.5  # after a probe that failed, or while a forward comes up
TICK = 0.2
WAKE_JUMP = 5.0  # the wall clock ran this much further than the loop: the laptop slept
# ssh took the connection but the server refused to connect it on: nothing listens on Jupyter's port.
JUPYTER_GONE = "Jupyter does not answer on the server (nothing listens on its port there)"


def local_port_free(port: int) -> bool:
    """Whether ssh can listen on localhost:PORT (it sets SO_REUSEADDR too)."""
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            # No IPv6 on this laptop, or a port it may not use: ssh will say.
            if family == socket.AF_INET and e.errno == errno.EACCES:
                return False
    return True


def require_local_port(port: int) -> None:
    if not local_port_free(port):
        raise BadInput(
            f"Local port {port} is taken: another program (or another `remote-agent connect`) listens on it.",
            "Pass another with --local-port N, or end what uses it.",
        )


def probe(port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when Jupyter answers through the forward; else why not."""
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return f"the forward's local port does not answer ({e.strerror or e})"
    with connection:
        try:
            connection.sendall(b"GET /api HTTP/1.0\r\nHost: localhost\r\n\r\n")
            head = connection.recv(16)
        except socket.timeout:  # noqa: UP041 (TimeoutError is its alias only from Python 3.10; the laptop may have 3.9)
            return "no answer through the forward"
        except OSError:
            head = b""  # ssh hung up on us (a reset): the server could not connect on
    if head.startswith(b"HTTP/"):
        return None
    return JUPYTER_GONE


class ForwardProcess(Protocol):
    """A running `ssh -N -L` (ssh_client.Forward)."""

    def exited(self) -> bool: ...
    def reason(self) -> str: ...
    def stop(self) -> None: ...


@dataclass
class Events:
    """What the holder reports; the command turns these into lines or JSON events."""

    up: Callable[[bool], None]  # first time?
    down: Callable[[str], None]
    waiting: Callable[[float, str], None]  # seconds until the next try, why the last failed


@dataclass
class Holder:
    target: SshTarget
    local_port: int
    remote_port: int
    events: Events
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    probe: Callable[[int, float], str | None] = probe
    open_forward: Callable[[SshTarget, int, int], ForwardProcess] = Forward
    # Runs serve on the server again when Jupyter is gone there (a reboot, a stop); its new port.
    restart: Callable[[], int] | None = None
    forward: ForwardProcess | None = None
    _up: bool = False
    _failed_probes: int = 0
    _next_probe: float = 0.0

    def hold(self) -> None:
        """Until Ctrl-C (KeyboardInterrupt) or a first forward that never works (StartFailed)."""
        try:
            self._hold()
        finally:
            if self.forward is not None:
                self.forward.stop()

    def _open(self) -> ForwardProcess:
        self.policy.opened(self.monotonic())
        self.forward = self.open_forward(self.target, self.local_port, self.remote_port)
        self._up, self._failed_probes, self._next_probe = False, 0, self.monotonic()
        return self.forward

    def _problem(self, forward: ForwardProcess, now: float) -> str | None:
        """Why this forward is to be given up now, or None while it works or may still come up."""
        if forward.exited():
            return forward.reason()
        if now >= self._next_probe:
            problem = self.probe(self.local_port, PROBE_TIMEOUT if self._up else COMING_UP_TIMEOUT)
            self._next_probe = now + (PROBE_INTERVAL if problem is None else PROBE_AGAIN)
            if problem is None:
                self._failed_probes = 0
                if not self._up:
                    self._up = True
                    first = not self.policy.ever_up
                    self.policy.came_up(now)
                    self.events.up(first)
            elif self._up or (problem == JUPYTER_GONE and self.policy.ever_up):
                self._failed_probes += 1
                if self._failed_probes >= FAILED_PROBES:
                    return problem
        if not self._up and self.policy.overdue(now):
            # ssh runs but nothing answers through it (the first time: the gate; later: try again).
            problem = self.probe(self.local_port, COMING_UP_TIMEOUT) or "no answer through the forward"
            return f"the forward did not work within {self.policy.gate_time:.0f} s: {problem}"
        return None

    def _hold(self) -> None:
        forward = self._open()
        last_wall, last_mono = self.wall(), self.monotonic()
        while True:
            self.sleep(TICK)
            now, wall = self.monotonic(), self.wall()
            if wall - last_wall > (now - last_mono) + WAKE_JUMP:
                self._next_probe = now  # back from sleep: look at once
            last_wall, last_mono = wall, now
            why = self._problem(forward, now)
            if why is None:
                continue
            forward.stop()
            if self._up:
                self.events.down(why)
            decision = self.policy.went_down(self.monotonic())
            if isinstance(decision, GiveUp):
                raise StartFailed(
                    f"The SSH forward to {self.target.destination} failed at once: {why}",
                    "That is no network drop, so it is not retried: a local port in use (--local-port), "
                    "forwarding refused by the server (sshd's AllowTcpForwarding), or Jupyter not running there.",
                )
            wait, restart_failed = decision.wait, False
            if why == JUPYTER_GONE and self.restart is not None:
                try:
                    self.remote_port, wait = self.restart(), 0.0
                except RemoteAgentError as e:
                    why, restart_failed = e.message, True
            if (not self._up and wait) or restart_failed:
                self.events.waiting(wait, why)
            self.sleep(wait)
            forward = self._open()
            last_wall, last_mono = self.wall(), self.monotonic()
