"""`status` and `url`: what runs, read from tmux, /proc and the keeper's state file."""

from __future__ import annotations

import json
from typing import Any

from remote_agent.console import Console
from remote_agent.errors import NotRunning
from remote_agent.runtime import Snapshot, snapshot
from remote_agent.settings import Settings
from remote_agent.state import Home
from remote_agent.tmux_session import TmuxSession


def take(settings: Settings) -> Snapshot:
    return snapshot(Home(settings.home), TmuxSession(settings.session), settings.port)


def as_json(snap: Snapshot) -> dict[str, Any]:
    t = snap.tunnel
    ssh = snap.provider == "ssh"
    return {
        "jupyter": {
            "running": snap.jupyter_running,
            "pid": snap.jupyter_pid,
            "port": snap.jupyter_port,
            "local_url": f"http://127.0.0.1:{snap.jupyter_port}/",
            "kernels": snap.kernels() if snap.jupyter_running else None,
        },
        "tunnel": {
            "provider": snap.provider,
            "running": snap.jupyter_running if ssh else snap.public_url is not None,
            "public_url": None if ssh else snap.public_url,
            "since": None if ssh or t is None or snap.public_url is None else t.since,
            "reopened": 0 if ssh or t is None else t.reopened,
            "last_error": None if ssh or t is None else t.last_error,
        },
    }


def problems(snap: Snapshot) -> list[str]:
    found = []
    if snap.jupyter_pid is None:
        found.append("Jupyter is not running: run `remote-agent serve` (kernels from before are lost).")
    elif not snap.jupyter_answers:
        found.append(
            f"Jupyter (pid {snap.jupyter_pid}) does not answer on port {snap.jupyter_port}: "
            "`remote-agent logs` shows why."
        )
    if snap.provider == "ngrok" and snap.public_url is None:
        t = snap.tunnel
        if not snap.keeper_running:
            reason = f" ({t.last_error})" if t is not None and t.status == "fatal" and t.last_error else ""
            found.append(f"The tunnel keeper is not running{reason}: run `remote-agent serve`.")
        else:
            why = t.last_error if t is not None and t.last_error else "it is starting"
            found.append(f"The tunnel is down: {why}. The keeper is reopening it.")
    return found


def status(settings: Settings, console: Console) -> int:
    snap = take(settings)
    found = problems(snap)
    if console.json_mode:
        console.out.write(json.dumps(as_json(snap)) + "\n")
        return 3 if found else 0
    data = as_json(snap)
    j, t = data["jupyter"], data["tunnel"]
    if j["running"]:
        console.line(f"Jupyter   running, pid {j['pid']}, {j['local_url']}, {j['kernels']} kernel(s)")
    else:
        console.line("Jupyter   not running")
    if t["provider"] == "ssh":
        console.line("Tunnel    ssh (no public URL; `remote-agent serve` prints the ssh command)")
    elif t["public_url"]:
        console.line(f"Tunnel    ngrok, {t['public_url']}, up since {t['since']}, reopened {t['reopened']} time(s)")
    else:
        console.line("Tunnel    ngrok, down")
    if t["last_error"]:
        console.line(f"Last error  {t['last_error']}")
    for problem in found:
        console.line(f"! {problem}")
    return 3 if found else 0


def url(settings: Settings, console: Console) -> int:
    snap = take(settings)
    if snap.provider == "ssh":
        raise NotRunning(
            "There is no public URL: the tunnel is SSH.", "Set NGROK_AUTHTOKEN and run `remote-agent serve` for one."
        )
    if snap.public_url is None:
        found = problems(snap) or ["The tunnel is not up."]
        raise NotRunning(found[0])
    console.out.write(snap.public_url + "\n")
    return 0
