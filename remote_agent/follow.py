"""What serve prints once things run, and following the tunnel afterwards: each new URL until Ctrl-C or hangup."""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

from remote_agent import procs
from remote_agent.console import Console
from remote_agent.keeper_config import KeeperConfig
from remote_agent.settings import Settings
from remote_agent.ssh_hint import host_is_private, laptop_url, ssh_command
from remote_agent.state import Home, TunnelState, now_iso, read_json, write_json

FOLLOW_POLL = 0.1


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
        console.line("Share it    Send the URL and the Jupyter password. On ngrok's free plan a visitor")
        console.line("            clicks 'Visit Site' once on ngrok's warning page, then logs in.")
    console.line(f"SSH         On your laptop: {ssh}")
    console.line(f"            then open {laptop_url(settings.laptop_port)} and log in with the Jupyter password.")
    if host_is_private(os.environ, settings.ssh_host):
        console.line("            (If you reach this server by another name, e.g. EC2's public DNS, use that as the")
        console.line("            host, or set REMOTE_AGENT_SSH_HOST.)")
    if provider == "ssh" and not settings.ngrok_authtoken:
        console.line("No tunnel   NGROK_AUTHTOKEN is not set, so there is no public URL. For one to share:")
        console.line(
            "            put NGROK_AUTHTOKEN=... in .env (free: https://dashboard.ngrok.com) and run serve again."
        )


def draw_qr(console: Console, url: str) -> None:
    if not console.json_mode:
        from remote_agent import qr

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
    """Print each new URL the keeper records until Ctrl-C or hangup."""
    console.line("")
    console.line("Following the tunnel: new URLs appear here. Ctrl-C stops following;")
    console.line("Jupyter and the tunnel keep running (`remote-agent url` prints the current URL).")
    last_url, last_status = last.public_url, last.status
    last_reopened = last.reopened  # a quick down-and-up may happen between two looks at the file
    last_stat: tuple[int, int] | None = None
    keeper_pid = last.keeper_pid
    while True:
        time.sleep(FOLLOW_POLL)
        try:
            st = home.tunnel_state.stat()
            current = (st.st_mtime_ns, st.st_ino)
        except OSError:
            current = None
        if current == last_stat:
            if keeper_pid and not procs.is_alive(keeper_pid):
                console.note("The tunnel keeper is gone; run `remote-agent serve` again to restart it.")
                return 3
            continue
        last_stat = current
        state = home.read_tunnel()
        if state is None:
            continue
        keeper_pid = state.keeper_pid or keeper_pid
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
        if state.status == "fatal":
            console.note(state.last_error or "ngrok refused the tunnel; the keeper stopped.")
            return 5
        if state.status == "stopped":
            console.line("The tunnel was stopped.")
            return 0
        last_status = state.status


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
        return 130
