"""What serve prints once things run, and following the tunnel afterwards: each new URL until Ctrl-C or hangup."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType

from remote_agent.config.settings import Settings
from remote_agent.core import procs
from remote_agent.core.console import Console
from remote_agent.core.errors import ExitCode
from remote_agent.core.home import Home
from remote_agent.core.ssh_hint import host_is_private, laptop_url, ssh_command
from remote_agent.core.store import read_json, write_json
from remote_agent.core.times import now_iso
from remote_agent.jupyter import record as jupyter_record
from remote_agent.supervision import supervisor
from remote_agent.supervision.tmux import JUPYTER_WINDOW
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.keeper_config import KeeperConfig
from remote_agent.tunnel.state import TunnelState

FOLLOW_POLL = 0.1
# A killed keeper is started again by the session's supervisor within seconds.
KEEPER_BACK_WITHIN = 30.0


def print_ready(
    settings: Settings, console: Console, pid: int, port: int, started_now: bool, public_url: str | None, provider: str
) -> None:
    ssh = ssh_command(port, os.environ, settings.ssh_host, settings.ssh_key, settings.laptop_port)
    local_url = f"http://127.0.0.1:{port}/"
    console.event("ready", public_url=public_url, local_url=local_url, ssh_command=ssh, jupyter_pid=pid)
    state = "started" if started_now else "already running"
    console.line(f"Jupyter     {state} (pid {pid}), on this server at {local_url}")
    if public_url:
        console.line(f"Public URL  {public_url}")
        console.line("Share it    `remote-agent share` makes a link that logs a collaborator in without your")
        console.line("            password. On ngrok's free plan a visitor clicks 'Visit Site' once on ngrok's")
        console.line("            warning page first.")
        if settings.basic_auth:
            console.line("            ngrok's edge asks them for NGROK_BASIC_AUTH's user and password too.")
    console.line(f"SSH         On your laptop: {ssh}")
    console.line(f"            then open {laptop_url(settings.laptop_port)} and log in with the Jupyter password.")
    if host_is_private(os.environ, settings.ssh_host):
        console.line("            (If you reach this server by another name, e.g. EC2's public DNS, use that as the")
        console.line("            host, or set REMOTE_AGENT_SSH_HOST.)")
    if provider == "ssh" and not settings.ngrok_authtoken:
        record = settings.session_record
        env_file = settings.env_file or (record.env_file if record else None) or Path.cwd() / ".env"
        console.line("No tunnel   NGROK_AUTHTOKEN is not set, so there is no public URL. For one to share, put")
        console.line(f"            NGROK_AUTHTOKEN=... in {env_file}")
        console.line("            (free: https://dashboard.ngrok.com) and run serve again.")


def report_edge(console: Console, state: TunnelState, before: dict[str, str] | None) -> dict[str, str] | None:
    """Say when ngrok's edge starts refusing visitors (an `edge_refused` event), and when it stops."""
    now = state.edge_refused
    if now is not None and (before is None or before.get("code") != now.get("code")):
        console.event("edge_refused", code=now.get("code"), message=now.get("message"))
        console.warn(now.get("message") or f"ngrok's edge refuses visitors ({now.get('code')})")
    elif now is None and before is not None:
        console.line(f"ngrok's edge serves visitors again ({before.get('code')} has cleared).")
    return now


def draw_qr(console: Console, url: str) -> None:
    if not console.json_mode:
        from remote_agent.commands import qr

        qr.draw(url, console.out)


def suggest_stable_url(home: Home, console: Console, state: TunnelState) -> None:
    """Once, after a reopen changed the URL: a reserved domain would have kept it."""
    if console.json_mode or state.url_changes < 1:
        return
    config = KeeperConfig.load(home.keeper_config)
    if config is None or config.domain or (read_json(home.hints) or {}).get("ngrok_domain"):
        return
    write_json(home.hints, {**(read_json(home.hints) or {}), "ngrok_domain": now_iso()})
    console.line("Tip         The URL changed when the tunnel was reopened. For a URL of your own that never")
    console.line(
        "            changes, set NGROK_DOMAIN in .env to a domain you reserved (dashboard.ngrok.com/domains)."
    )


def follow(home: Home, console: Console, last: TunnelState, qr: bool = False) -> int:
    """Print each new URL the keeper records, and Jupyter's restarts, until Ctrl-C or hangup."""
    console.line("")
    console.line("Following the tunnel: new URLs appear here. Ctrl-C stops following;")
    console.line("Jupyter and the tunnel keep running (`remote-agent url` prints the current URL).")
    last_url, last_status, last_edge = last.public_url, last.status, last.edge_refused
    last_reopened = last.reopened  # a quick down-and-up may happen between two looks at the file
    last_stat: tuple[int, int] | None = None
    keeper_pid = last.keeper_pid
    keeper_gone_since: float | None = None
    restarts = JupyterRestarts(home)
    while True:
        time.sleep(FOLLOW_POLL)
        restarts.report(console)
        try:
            st = home.tunnel_state.stat()
            current = (st.st_mtime_ns, st.st_ino)
        except OSError:
            current = None
        if current == last_stat:
            keeper_gone_since = _keeper_gone_since(keeper_pid, keeper_gone_since)
            if keeper_gone_since is not None and time.monotonic() - keeper_gone_since > KEEPER_BACK_WITHIN:
                console.note("The tunnel keeper is gone; run `remote-agent serve` again to restart it.")
                return ExitCode.NOT_RUNNING
            continue
        last_stat = current
        state = tunnel_state.read(home)
        if state is None:
            continue
        if state.keeper_pid and state.keeper_pid != keeper_pid:
            keeper_pid, keeper_gone_since = state.keeper_pid, None
        reopened_unseen = state.status == "up" and last_status == "up" and state.reopened != last_reopened
        if (state.status != "up" and last_status == "up") or reopened_unseen:
            console.event("tunnel_down", error=state.last_error)
            console.line(f"Tunnel down: {state.last_error or state.status}; reopening ...")
        if reopened_unseen:
            last_status = "down"
        last_reopened = state.reopened
        if state.status == "up" and state.public_url and state.public_url != last_url:
            console.event("url_changed", public_url=state.public_url)
            console.line(f"New public URL  {state.public_url}")
            last_url = state.public_url
            if qr:
                draw_qr(console, state.public_url)
            suggest_stable_url(home, console, state)
        elif state.status == "up" and last_status != "up" and state.public_url == last_url:
            console.event("tunnel_up", public_url=last_url)
            console.line(f"Tunnel back at the same URL  {last_url}")
        ended = _keeper_ended(state, last_status, console)
        if ended is not None:
            return ended
        last_status, last_edge = state.status, report_edge(console, state, last_edge)


def _keeper_gone_since(keeper_pid: int | None, since: float | None) -> float | None:
    """Since when the keeper has been gone (the session's supervisor starts a new one within seconds)."""
    if not keeper_pid or procs.is_alive(keeper_pid):
        return None
    return since or time.monotonic()


def _keeper_ended(state: TunnelState, last_status: str, console: Console) -> int | None:
    """The exit code when the keeper has ended for good; a crash is not that (it is restarted)."""
    if state.status == "crashed" and last_status != "crashed":
        console.note(f"{state.last_error or 'The tunnel keeper crashed'}; it is restarted by itself.")
    if state.status == "fatal":
        console.note(state.last_error or "ngrok refused the tunnel; the keeper stopped.")
        return ExitCode.START_FAILED
    if state.status == "stopped":
        console.line("The tunnel was stopped.")
        return 0
    return None


def report_restarts(home: Home, console: Console) -> None:
    """Say plainly when Jupyter came back by itself (its kernels were lost), or why it did not."""
    seen = supervisor.history(home, JUPYTER_WINDOW)
    if seen is None:
        return
    if seen.total and seen.last_restart:
        times = "once" if seen.total == 1 else f"{seen.total} times"
        console.warn(
            f"Jupyter was restarted by itself ({times}, last at {seen.last_restart}, after it was {seen.last_exit}): "
            "kernels from before then were lost; re-run your notebooks' cells."
        )
    if seen.gave_up or seen.exited:
        console.warn(f"{seen.gave_up or seen.exited}. `remote-agent logs` shows why.")


class JupyterRestarts:
    """Tells a following serve when Jupyter came back by itself, or gave up, once each."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.path = home.supervision
        self.stat: tuple[int, int] | None = self._stat()
        seen = supervisor.history(home, JUPYTER_WINDOW)
        self.total = seen.total if seen else 0
        self.ended = bool(seen and (seen.gave_up or seen.exited))

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def report(self, console: Console) -> None:
        current = self._stat()
        if current == self.stat:
            return
        self.stat = current
        seen = supervisor.history(self.home, JUPYTER_WINDOW)
        if seen is None:
            return
        if seen.total > self.total:
            self.total = seen.total
            record = jupyter_record.read(self.home)
            pid = record.pid if record else None
            console.event("jupyter_restarted", jupyter_pid=pid, reason=seen.last_exit, restarts=seen.total)
            console.line(
                f"Jupyter restarted (pid {pid}): it was {seen.last_exit}. Kernels from before were lost; "
                "re-run your notebooks' cells."
            )
        ended = seen.gave_up or seen.exited
        if ended and not self.ended:
            self.ended = True
            console.event("jupyter_stopped", error=ended)
            console.note(f"{ended}. `remote-agent logs` shows why; `remote-agent serve` starts it again.")


class Hangup(Exception):
    """The terminal went away (SSH dropped): stop following, quietly."""


def _raise_hangup(_signum: int, _frame: FrameType | None) -> None:
    raise Hangup()


def follow_until_hangup(home: Home, console: Console, last: TunnelState, qr: bool) -> int:
    """follow(), ended quietly by Ctrl-C or a dropped SSH connection; neither stops anything."""
    signal.signal(signal.SIGHUP, _raise_hangup)
    try:
        return follow(home, console, last, qr)
    except (Hangup, OSError):
        # OSError (BrokenPipeError among them): writing to a terminal that has gone away.
        return ExitCode.INTERRUPTED
