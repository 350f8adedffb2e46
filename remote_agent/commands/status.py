"""`status` and `url`: what runs, read from the records, /proc and the keeper's state file (never tmux)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from remote_agent.commands import status_live, warm_answer
from remote_agent.commands.runtime import Snapshot, snapshot
from remote_agent.commands.warm_answer import Invocation
from remote_agent.config.settings import Settings
from remote_agent.core import loopback
from remote_agent.core.console import Console
from remote_agent.core.errors import ExitCode, NotRunning
from remote_agent.core.home import Home
from remote_agent.core.redaction import SECRET_ENV_KEYS
from remote_agent.supervision import supervisor
from remote_agent.supervision.tmux import JUPYTER_WINDOW, KEEPER_WINDOW
from remote_agent.tunnel.state import TunnelState

if TYPE_CHECKING:
    from remote_agent.commands.status_live import NotebookSource, Row


def take(settings: Settings) -> Snapshot:
    return snapshot(Home(settings.home), settings.port)


def collaboration_on(snap: Snapshot) -> bool:
    """Whether the running Jupyter keeps notebooks on the server; a Jupyter from before the setting: False."""
    return bool(snap.record is not None and snap.record.collaboration)


def notebook_source(snap: Snapshot) -> NotebookSource | None:
    """Where the running cells are asked, when Jupyter runs with the notebooks on the server."""
    if not snap.jupyter_running or snap.home is None or not collaboration_on(snap):
        return None
    from remote_agent.jupyter.collaboration import STATUS_ROUTE, status_token_file

    return [snap.jupyter_port, STATUS_ROUTE, str(status_token_file(snap.home.root))]


def running_notebooks(snap: Snapshot, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Each running cell Jupyter knows of (path, cell, running_since, last_output), asked with the owner's secret."""
    return status_live.running_notebooks(notebook_source(snap), timeout)


def laid_out(snap: Snapshot) -> dict[str, Any]:
    """`status --json` from the records, but for what status_live.document fills in when shown."""
    t = snap.tunnel
    ssh = snap.provider == "ssh"
    return {
        "jupyter": {
            "running": snap.jupyter_running,
            "pid": snap.jupyter_pid,
            "port": snap.jupyter_port,
            "local_url": f"http://127.0.0.1:{snap.jupyter_port}/",
            "kernels": None,
            **restarts_json(snap),
            "collaboration": collaboration_on(snap),
            "notebooks": [],
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
    rows: list[Row]  # the table laid out once: for these lines, and for the record of the next status

    @property
    def exit_code(self) -> int:
        return ExitCode.NOT_RUNNING if self.found else ExitCode.OK

    def lines(self) -> list[str]:
        table = status_live.render(self.rows, time.time(), self.notebooks)
        return [*table, *(f"! {problem}" for problem in self.found)]

    def document(self) -> dict[str, Any]:
        return status_live.document(laid_out(self.snap), self.snap.jupyter_pid, self.notebooks)


def status(settings: Settings, invocation: Invocation) -> StatusReport:
    facts = warm_answer.Facts(warm_answer.home_files(str(settings.home)))  # before anything is read
    snap = take(settings)
    report = StatusReport(snap, running_notebooks(snap), problems(snap), layout(snap))
    remember_answer(settings, invocation, report, facts)
    return report


def remember_answer(settings: Settings, invocation: Invocation, report: StatusReport, facts: warm_answer.Facts) -> None:
    """A status that found nothing wrong, laid out for commands/quick.py to fill in and print next time."""
    snap, home = report.snap, str(settings.home)
    if report.found or snap.jupyter_pid is None:
        warm_answer.forget(home, "status")
        return
    answer = {
        "rows": report.rows,
        "document": json.dumps(laid_out(snap)),  # a string: the object keeps its keys' order
        "notebooks_from": notebook_source(snap),
        "jupyter_pid": snap.jupyter_pid,
    }
    facts.pids = [snap.jupyter_pid, *([snap.keeper_pid] if snap.keeper_pid else [])]
    facts.port = snap.jupyter_port
    warm_answer.record(home, "status", invocation, SECRET_ENV_KEYS, answer, facts)


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


def layout(snap: Snapshot) -> list[Row]:
    """status for people, a row per thing grouped under Jupyter and Tunnel; what changes by the
    moment (times since, kernels, running cells, latency) as marks that status_live fills in."""
    from remote_agent.jupyter.process import APP_NAMES

    rows: list[Row] = []
    if snap.jupyter_running and snap.jupyter_pid:
        app = APP_NAMES.get(snap.record.app if snap.record else "notebook", "Jupyter")
        rows.append(f"Jupyter   running, pid {snap.jupyter_pid} ({app}), http://127.0.0.1:{snap.jupyter_port}/")
        # Uptime is read from /proc when shown; the record's start is for when /proc cannot say.
        recorded = status_live.since(snap.record.started_at if snap.record is not None else None)
        rows.append(["uptime", snap.jupyter_pid, *recorded])
        rows.append(["kernels", snap.jupyter_pid])
        if snap.record is not None and snap.record.collaboration is not None:
            rows.append("  collab    " + ("on: outputs kept on the server" if snap.record.collaboration else "off"))
        rows.append(["notebooks"])
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
        opened, since_text = status_live.since(t.since)
        if opened is not None:
            rows.append(["age", opened, since_text])
    else:
        rows.append(f"Tunnel    ngrok, down ({t.status})" if t is not None else "Tunnel    ngrok, not started")
    if t is not None:
        rows.append(f"  reopened  {reopen_summary(t)}")
        if snap.public_url:
            rows.append(["latency", loopback.port_of(t.api_url)])
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
