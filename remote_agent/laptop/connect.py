"""`connect`, on the laptop: serve on the server over SSH, then a forward that heals.

Runs on the laptop's own Python (3.9 on macOS) with the standard library only. It never
reads a .env here: the server's session keeps its own settings, and without --tunnel
nothing is asked of it but to run.
"""

from __future__ import annotations

import signal
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, ExitCode
from remote_agent.laptop import remote_serve
from remote_agent.laptop.forward import Events, Holder, require_local_port
from remote_agent.laptop.ssh_client import SshTarget, require_ssh

DEFAULT_LOCAL_PORT = 12345


@dataclass(frozen=True)
class ConnectOptions:
    target: SshTarget
    local_port: int = DEFAULT_LOCAL_PORT
    remote_dir: str | None = None
    remote_command: str | None = None
    tunnel: str | None = None
    browser: bool = True


def check(options: ConnectOptions) -> None:
    destination = options.target.destination
    if not destination or destination.startswith("-") or destination.endswith("@"):
        raise BadInput(f"{destination!r} is not a host to connect to.", "Give [USER@]HOST, e.g. ubuntu@203.0.113.7.")
    if not 0 < options.local_port < 65536:
        raise BadInput(f"--local-port {options.local_port}: not a port.", "Give a number from 1024 to 65535.")


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Connection:
    """One `connect`: serve on the server, then the forward, and what the user is told of each."""

    def __init__(self, options: ConnectOptions, console: Console, open_browser: Callable[[str], bool]) -> None:
        self.options = options
        self.console = console
        self.open_browser = open_browser
        self.host = options.target.host
        self.local_url = f"http://localhost:{options.local_port}/"
        self._down_since: float | None = None

    def start_serve(self) -> remote_serve.RemoteJupyter:
        o = self.options
        jupyter = remote_serve.start(o.target, o.remote_dir, o.remote_command, o.tunnel)
        if jupyter.serve_failed:
            self.console.warn(
                f"serve failed on {self.host} (see above), but Jupyter runs there: forwarding to it all the same."
            )
        return jupyter

    def run(self) -> int:
        self.console.note(f"Starting remote-agent on {self.options.target.destination} ...")
        jupyter = self.start_serve()
        events = Events(up=lambda first: self.up(first, jupyter), down=self.down, waiting=self.waiting)
        holder = Holder(self.options.target, self.options.local_port, jupyter.port, events, restart=self.restart)
        # `kill` ends connect as Ctrl-C does: the forward's ssh must not outlive it, holding the port.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            holder.hold()
        except KeyboardInterrupt:
            self.console.note(f"Forward closed. Jupyter keeps running on {self.host}; connect again to reach it.")
            return ExitCode.INTERRUPTED
        return 0  # not reached: holding ends with Ctrl-C or an error

    def up(self, first: bool, jupyter: remote_serve.RemoteJupyter) -> None:
        console = self.console
        if not first:
            console.event("forward_up", local_url=self.local_url)
            away = f" after {time.monotonic() - self._down_since:.0f} s" if self._down_since else ""
            console.note(f"Forward up again{away}: {self.local_url}")
            return
        console.event("connected", local_url=self.local_url, public_url=jupyter.public_url, jupyter_pid=jupyter.pid)
        pid = f"pid {jupyter.pid}, " if jupyter.pid else ""
        console.line(f"Jupyter     on {self.host} ({pid}port {jupyter.port}), here at {self.local_url}")
        if jupyter.public_url:
            console.line(f"Public URL  {jupyter.public_url}")
        console.line("")
        port = self.options.local_port
        console.line(f"Holding the SSH forward: when it drops it is reopened on port {port},")
        console.line(f"so the same browser tab keeps working. Ctrl-C ends it; Jupyter keeps running on {self.host}.")
        if self.options.browser and not self.open_browser(self.local_url):
            console.note(f"Open {self.local_url} in your browser.")

    def down(self, why: str) -> None:
        self._down_since = time.monotonic()
        self.console.event("forward_down", error=why)
        self.console.note(f"Forward down: {why}; reopening on port {self.options.local_port} ...")

    def waiting(self, wait: float, why: str) -> None:
        self.console.note(f"No forward to {self.host} yet ({why}); next try in {wait:.0f} s ...")

    def restart(self) -> int:
        self.console.note(f"Jupyter does not answer on {self.host}: running serve there again ...")
        return self.start_serve().port


def connect(options: ConnectOptions, console: Console, open_browser: Callable[[str], bool] = webbrowser.open) -> int:
    check(options)
    require_ssh()
    require_local_port(options.local_port)
    return Connection(options, console, open_browser).run()
