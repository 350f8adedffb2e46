"""`connect`, on the laptop: serve on the server over SSH, then a forward that heals.

Runs on the laptop's own Python (3.9 on macOS) with the standard library only. It never
reads a .env here: the server's session keeps its own settings, and without --tunnel
nothing is asked of it but to run.
"""

from __future__ import annotations

import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass

from remote_agent import remote_serve
from remote_agent.console import Console
from remote_agent.errors import BadInput
from remote_agent.forward import Events, Holder, require_local_port
from remote_agent.ssh_client import SshTarget, require_ssh

DEFAULT_LOCAL_PORT = 12345
INTERRUPTED = 130


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


def connect(options: ConnectOptions, console: Console, open_browser: Callable[[str], bool] = webbrowser.open) -> int:
    check(options)
    require_ssh()
    require_local_port(options.local_port)
    host = options.target.host
    console.note(f"Starting remote-agent on {options.target.destination} ...")
    jupyter = remote_serve.start(options.target, options.remote_dir, options.remote_command, options.tunnel)
    if jupyter.serve_failed:
        console.warn(f"serve failed on {host} (see above), but Jupyter runs there: forwarding to it all the same.")
    local_url = f"http://localhost:{options.local_port}/"
    down_since: list[float] = []

    def up(first: bool) -> None:
        if first:
            console.event("connected", local_url=local_url, public_url=jupyter.public_url, jupyter_pid=jupyter.pid)
            pid = f"pid {jupyter.pid}, " if jupyter.pid else ""
            console.line(f"Jupyter     on {host} ({pid}port {jupyter.port}), here at {local_url}")
            if jupyter.public_url:
                console.line(f"Public URL  {jupyter.public_url}")
            console.line("")
            console.line(f"Holding the SSH forward: when it drops it is reopened on port {options.local_port},")
            console.line(f"so the same browser tab keeps working. Ctrl-C ends it; Jupyter keeps running on {host}.")
            if options.browser and not open_browser(local_url):
                console.note(f"Open {local_url} in your browser.")
            return
        console.event("forward_up", local_url=local_url)
        away = f" after {time.monotonic() - down_since.pop():.0f} s" if down_since else ""
        console.note(f"Forward up again{away}: {local_url}")

    def down(why: str) -> None:
        down_since[:] = [time.monotonic()]
        console.event("forward_down", error=why)
        console.note(f"Forward down: {why}; reopening on port {options.local_port} ...")

    def waiting(wait: float, why: str) -> None:
        console.note(f"No forward to {host} yet ({why}); next try in {wait:.0f} s ...")

    holder = Holder(options.target, options.local_port, jupyter.port, Events(up, down, waiting))
    try:
        holder.hold()
    except KeyboardInterrupt:
        console.note(f"Forward closed. Jupyter keeps running on {host}; connect again to reach it.")
        return INTERRUPTED
    return 0  # not reached: holding ends with Ctrl-C or an error
