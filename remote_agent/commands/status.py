"""`status` and `url`: what runs, read from the records, /proc and the keeper's state file (never tmux)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from remote_agent.commands.runtime import Snapshot, snapshot
from remote_agent.config.settings import Settings
from remote_agent.core import loopback, times
from remote_agent.core.console import Console
from remote_agent.core.errors import ExitCode, NotRunning
from remote_agent.core.home import Home
from remote_agent.supervision import supervisor
from remote_agent.supervision.tmux import JUPYTER_WINDOW, KEEPER_WINDOW
from remote_agent.tunnel.state import TunnelState


def take(settings: Settings) -> Snapshot:
    return snapshot(Home(settings.home), settings.port)


def collaboration_on(snap: Snapshot) -> bool:
    """Whether the running Jupyter keeps notebooks on the server; a Jupyter from before the setting: False."""
    return bool(snap.record is not None and snap.record.collaboration)


def running_notebooks(snap: Snapshot, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Each running cell Jupyter knows of (path, cell, running_since, last_output), asked with the owner's secret."""
    if not snap.jupyter_running or snap.home is None or not collaboration_on(snap):
        return []
    from remote_agent.jupyter.collaboration import STATUS_ROUTE, read_status_token

    token = read_status_token(snap.home.root)
    if token is None:
        return []
    answer = loopback.get(snap.jupyter_port, STATUS_ROUTE, timeout, {"Authorization": f"token {token}"})
    try:
        data = json.loads(answer[1]) if answer is not None and answer[0] == 200 else {}
    except ValueError:
        return []
    found = data.get("notebooks") if isinstance(data, dict) else None
    return [n for n in found if isinstance(n, dict)] if isinstance(found, list) else []


def as_json(snap: Snapshot, notebooks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    t = snap.tunnel
    ssh = snap.provider == "ssh"
    return {
        "jupyter": {
            "running": snap.jupyter_running,
            "pid": snap.jupyter_pid,
            "port": snap.jupyter_port,
            "local_url": f"http://127.0.0.1:{snap.jupyter_port}/",
            "kernels": snap.kernels() if snap.jupyter_running else None,
            **restarts_json(snap),
            "collaboration": collaboration_on(snap),
            "notebooks": [
                {key: n.get(key) for key in ("path", "running_since", "last_output")} for n in notebooks or []
            ],
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


def jupyter_history(snap: Snapshot) -> supervisor.WindowHistory | None:
    return supervisor.history(snap.home, JUPYTER_WINDOW) if snap.home is not None else None


def restarts_json(snap: Snapshot) -> dict[str, Any]:
    seen = jupyter_history(snap)
    return {
        "restarts": seen.total if seen else 0,
        "last_restart": seen.last_restart if seen else None,
        "restart_error": (seen.gave_up or seen.exited) if seen else None,
    }


def restart_lines(snap: Snapshot) -> list[str]:
    """Jupyter's restarts by itself, for people: the kernels were lost each time."""
    seen = jupyter_history(snap)
    if seen is None or not seen.total:
        return []
    times = "once" if seen.total == 1 else f"{seen.total} times"
    return [f"  restarted {times} by itself, last at {seen.last_restart} (it was {seen.last_exit}): kernels lost"]


def problems(snap: Snapshot) -> list[str]:
    found = []
    seen = jupyter_history(snap)
    if snap.jupyter_pid is None and seen is not None and (seen.gave_up or seen.exited):
        found.append(f"{seen.gave_up or seen.exited}: `remote-agent logs` shows why; `remote-agent serve` starts it.")
    elif snap.jupyter_pid is None:
        found.append("Jupyter is not running: run `remote-agent serve` (kernels from before are lost).")
    elif not snap.jupyter_answers:
        found.append(
            f"Jupyter (pid {snap.jupyter_pid}) does not answer on port {snap.jupyter_port}: "
            "`remote-agent logs` shows why."
        )
    refused = snap.tunnel.edge_refused if snap.provider == "ngrok" and snap.tunnel is not None else None
    if snap.public_url is not None and refused is not None:
        found.append(refused.get("message") or f"ngrok's edge refuses visitors ({refused.get('code')}).")
    if snap.provider == "ngrok" and snap.public_url is None:
        t = snap.tunnel
        if not snap.keeper_running:
            reason = f" ({t.last_error})" if t is not None and t.status in ("fatal", "crashed") and t.last_error else ""
            keeper = supervisor.history(snap.home, KEEPER_WINDOW) if snap.home is not None else None
            if keeper is not None and keeper.gave_up:
                reason = f" ({keeper.gave_up})"
            found.append(f"The tunnel keeper is not running{reason}: run `remote-agent serve`.")
        else:
            why = t.last_error if t is not None and t.last_error else "it is starting"
            found.append(f"The tunnel is down: {why}. The keeper is reopening it.")
    return found


@dataclass
class StatusReport:
    """What `status` found: every part of the session, and what is wrong with it (exit 3 then)."""

    snap: Snapshot
    notebooks: list[dict[str, Any]]
    found: list[str]

    @property
    def exit_code(self) -> int:
        return ExitCode.NOT_RUNNING if self.found else ExitCode.OK

    def lines(self) -> list[str]:
        return [*table(self.snap, notebooks=self.notebooks), *(f"! {problem}" for problem in self.found)]

    def document(self) -> dict[str, Any]:
        return as_json(self.snap, self.notebooks)


def status(settings: Settings) -> StatusReport:
    snap = take(settings)
    return StatusReport(snap, running_notebooks(snap), problems(snap))


# -- the table for people -------------------------------------------------------


def duration(seconds: float) -> str:
    """12 s, 5 min, 2 h 14 min, 3 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _since(iso: str | None) -> tuple[float | None, str]:
    """(epoch seconds, 'since 2025-11-22 13:40 UTC') for a state file's ISO time."""
    at = times.parse_iso(iso)
    return (at.timestamp(), times.since_text(at)) if at is not None else (None, "")


def agent_status(api_url: str | None, timeout: float = 0.5) -> dict[str, Any]:
    """The agent's own GET /api/status (loopback, no auth): region, latency; {} when it does not answer."""
    if not api_url:
        return {}
    from urllib.parse import urlsplit

    try:
        port = urlsplit(api_url).port
    except ValueError:
        return {}
    if port is None or urlsplit(api_url).hostname not in ("127.0.0.1", "localhost"):
        return {}  # the keeper gives the agent a loopback address of its own choosing
    answer = loopback.get(port, "/api/status", timeout, limit=65536)
    try:
        data = json.loads(answer[1]) if answer is not None and answer[0] == 200 else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _milliseconds(latency: object) -> float | None:
    """The agent gives latency as a Go duration string ("87.2ms", "1.2s", "950µs"); older shapes a number."""
    if isinstance(latency, (int, float)) and not isinstance(latency, bool):
        return float(latency)
    match = re.fullmatch(r"\s*([\d.]+)\s*(ms|s|µs|us|ns)\s*", latency) if isinstance(latency, str) else None
    if match is None:
        return None
    try:
        value = float(match[1])
    except ValueError:
        return None
    return value * {"s": 1000.0, "ms": 1.0, "µs": 0.001, "us": 0.001, "ns": 0.000001}[match[2]]


def region_and_latency(status: dict[str, Any]) -> str | None:
    """'region eu, latency 23 ms' from the agent's /api/status: per session leg (`session.legs`)."""
    found = status.get("session")
    session: dict[str, Any] = found if isinstance(found, dict) else {}
    legs = [leg for leg in session.get("legs") or [] if isinstance(leg, dict)]
    leg = legs[0] if legs else {}
    region = leg.get("region") or status.get("region") or session.get("region")
    latency = _milliseconds(leg.get("latency", status.get("latency_ms", session.get("latency_ms"))))
    parts = [f"region {region}"] if isinstance(region, str) and region else []
    if latency is not None:
        parts.append(f"latency {latency:.0f} ms")
    state = status.get("status")
    if isinstance(state, str) and state and state != "online":
        parts.append(state)
    return ", ".join(parts) or None


def reopen_summary(tunnel: TunnelState) -> str:
    if not tunnel.reopened:
        return "never"
    times = "once" if tunnel.reopened == 1 else f"{tunnel.reopened} times"
    reasons = sorted(tunnel.reopen_reasons.items(), key=lambda kv: -kv[1])[:3]
    if len(reasons) == 1 and reasons[0][1] == tunnel.reopened:
        return f"{times}: {reasons[0][0]}"
    why = ", ".join(f"{reason} ({count})" for reason, count in reasons)
    return f"{times}: {why}" if why else times


def trouble_rows(t: TunnelState, public_url: str | None) -> list[str]:
    """Why the tunnel is down, or what ngrok's edge answers visitors while it is up."""
    if t.last_error and not public_url:
        return [f"  why       {t.last_error}"]
    if t.edge_refused and public_url:
        return [f"  refused   {t.edge_refused.get('code')} at ngrok's edge since {t.edge_refused.get('at')}"]
    return []


def notebook_lines(snap: Snapshot, notebooks: list[dict[str, Any]], now: float) -> list[str]:
    """Whether notebooks live on the server, and each running cell:
    '  notebook  train.ipynb  cell 7 running 2 h 13 min  last: epoch 41/100 loss 0.231'."""
    rows = []
    if snap.record is not None and snap.record.collaboration is not None:
        rows.append("  collab    " + ("on: outputs kept on the server" if snap.record.collaboration else "off"))
    for n in notebooks:
        started, _ = _since(n.get("running_since"))
        running = f"running {duration(now - started)}" if started is not None else "running"
        cell = f"cell {n['cell']} " if isinstance(n.get("cell"), int) else ""
        last = f"  last: {n['last_output']}" if n.get("last_output") else ""
        rows.append(f"  notebook  {n.get('path')}  {cell}{running}{last}")
    return rows


def table(snap: Snapshot, now: float | None = None, notebooks: list[dict[str, Any]] | None = None) -> list[str]:
    """status for people: a line per thing, grouped under Jupyter and Tunnel."""
    from remote_agent.core.procs import started_at
    from remote_agent.jupyter.process import APP_NAMES, kernel_activity

    now = time.time() if now is None else now
    rows: list[str] = []
    if snap.jupyter_running and snap.jupyter_pid:
        app = APP_NAMES.get(snap.record.app if snap.record else "notebook", "Jupyter")
        rows.append(f"Jupyter   running, pid {snap.jupyter_pid} ({app}), http://127.0.0.1:{snap.jupyter_port}/")
        started = started_at(snap.jupyter_pid)
        since = _since(times.iso(datetime.fromtimestamp(started, timezone.utc))) if started else _since(None)
        if since[0] is None and snap.record is not None:
            since = _since(snap.record.started_at)
        if since[0] is not None:
            rows.append(f"  uptime    {duration(now - since[0])}, {since[1]}")
        busy, idle = kernel_activity(snap.jupyter_pid)
        count = busy + idle
        rows.append(f"  kernels   {count}" + (f": {busy} busy, {idle} idle" if count else ""))
        rows.extend(notebook_lines(snap, notebooks or [], now))
        rows.extend(restart_lines(snap))
    elif snap.jupyter_pid:
        rows.append(f"Jupyter   pid {snap.jupyter_pid}, not answering on port {snap.jupyter_port}")
    else:
        rows.append("Jupyter   not running")
        rows.extend(restart_lines(snap))
    t = snap.tunnel
    if snap.provider == "ssh":
        rows.append("Tunnel    ssh (no public URL; `remote-agent serve` prints the ssh command)")
        return rows
    if snap.public_url and t is not None:
        rows.append(f"Tunnel    ngrok, {snap.public_url}")
        opened, since_text = _since(t.since)
        if opened is not None:
            rows.append(f"  age       {duration(now - opened)}, {since_text}")
    else:
        rows.append(f"Tunnel    ngrok, down ({t.status})" if t is not None else "Tunnel    ngrok, not started")
    if t is not None:
        rows.append(f"  reopened  {reopen_summary(t)}")
        if snap.public_url:
            rows.append(f"  ngrok     {region_and_latency(agent_status(t.api_url)) or 'region and latency unknown'}")
        rows.extend(trouble_rows(t, snap.public_url))
    return rows


def url(settings: Settings, console: Console, qr: bool = False) -> int:
    snap = take(settings)
    if snap.provider == "ssh":
        raise NotRunning(
            "There is no public URL: the tunnel is SSH.", "Set NGROK_AUTHTOKEN and run `remote-agent serve` for one."
        )
    if snap.public_url is None:
        found = problems(snap) or ["The tunnel is not up."]
        raise NotRunning(found[0])
    console.out.write(snap.public_url + "\n")
    if qr:
        from remote_agent.commands import qr as qr_code

        qr_code.draw(snap.public_url, console.out)
    return 0
