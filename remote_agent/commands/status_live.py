"""What `status` shows that changes from one moment to the next, read with the standard library alone.

commands/status.py lays `status` out from the records: its table as rows, some of which are
marks for what is read at the moment it is shown (how long Jupyter and the tunnel have been
up, the kernels' activity, the running cells, ngrok's region and latency), and its JSON
object but for the kernels and the cells. This module fills those in, for the full command
and for a status answered from its record (commands/quick.py) alike, so both say the same.
"""

from __future__ import annotations

import json
import re

from remote_agent.core import loopback
from remote_agent.jupyter.running import kernel_activity, kernel_pids

TYPE_CHECKING = False  # typing is not loaded on the quick path (commands/quick.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    # A row of the table: its text, or a mark [what, *arguments] filled in when shown:
    # ["uptime", jupyter_pid, recorded epoch or None, "since ..."], ["kernels", jupyter_pid],
    # ["notebooks"], ["age", epoch, "since ..."], ["latency", the agent API's port or None].
    Row = Any
    # Where the running cells are asked: [Jupyter's port, the route, the file with the owner's secret].
    NotebookSource = list[Any]


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


def since(iso: str | None) -> tuple[float | None, str]:
    """(epoch seconds, 'since 2025-11-22 13:40 UTC') for an ISO time of a record; (None, "") without one."""
    from remote_agent.core import times  # datetime: only when a row needs it

    at = times.parse_iso(iso)
    return (at.timestamp(), times.since_text(at)) if at is not None else (None, "")


def started_since(pid: int) -> tuple[float | None, str]:
    """`since` for when `pid` started (to the second, as shown), read from /proc now."""
    from datetime import datetime, timezone

    from remote_agent.core import procs, times

    started = procs.started_at(pid)
    return since(times.iso(datetime.fromtimestamp(started, timezone.utc))) if started else (None, "")


def running_notebooks(source: NotebookSource | None, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Each running cell Jupyter knows of (path, cell, running_since, last_output), asked with the owner's secret."""
    if not source:
        return []
    port, route, token_file = source
    try:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError:
        return []
    if not token:
        return []
    answer = loopback.get(port, route, timeout, {"Authorization": f"token {token}"})
    try:
        data = json.loads(answer[1]) if answer is not None and answer[0] == 200 else {}
    except ValueError:
        return []
    found = data.get("notebooks") if isinstance(data, dict) else None
    return [n for n in found if isinstance(n, dict)] if isinstance(found, list) else []


def notebook_entries(notebooks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The running cells as `status --json` gives them."""
    return [{key: n.get(key) for key in ("path", "running_since", "last_output")} for n in notebooks]


def notebook_rows(notebooks: Sequence[dict[str, Any]], now: float) -> list[str]:
    """'  notebook  train.ipynb  cell 7 running 2 h 13 min  last: epoch 41/100 loss 0.231'."""
    rows = []
    for n in notebooks:
        started, _ = since(n.get("running_since"))
        running = f"running {duration(now - started)}" if started is not None else "running"
        cell = f"cell {n['cell']} " if isinstance(n.get("cell"), int) else ""
        last = f"  last: {n['last_output']}" if n.get("last_output") else ""
        rows.append(f"  notebook  {n.get('path')}  {cell}{running}{last}")
    return rows


def agent_status(port: int | None, timeout: float = 0.5) -> dict[str, Any]:
    """The agent's own GET /api/status (loopback, no auth): region, latency; {} when it does not answer."""
    if port is None:
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


def render(rows: Sequence[Row], now: float, notebooks: Sequence[dict[str, Any]]) -> list[str]:
    """The table's lines: each row's text, each mark filled in as things are now."""
    lines: list[str] = []
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
            continue
        what, *args = row
        if what == "uptime":
            started, since = started_since(args[0])
            if started is None:
                started, since = args[1], args[2]
            if started is not None:
                lines.append(f"  uptime    {duration(now - started)}, {since}")
        elif what == "age":
            lines.append(f"  age       {duration(now - args[0])}, {args[1]}")
        elif what == "kernels":
            busy, idle = kernel_activity(args[0])
            count = busy + idle
            lines.append(f"  kernels   {count}" + (f": {busy} busy, {idle} idle" if count else ""))
        elif what == "notebooks":
            lines.extend(notebook_rows(notebooks, now))
        elif what == "latency":
            lines.append(f"  ngrok     {region_and_latency(agent_status(args[0])) or 'region and latency unknown'}")
    return lines


def document(laid_out: dict[str, Any], jupyter_pid: int | None, notebooks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`status --json`: the object laid out from the records, with the kernels and running cells of now."""
    jupyter = laid_out["jupyter"]
    jupyter["kernels"] = len(kernel_pids(jupyter_pid)) if jupyter["running"] and jupyter_pid else None
    jupyter["notebooks"] = notebook_entries(notebooks)
    return laid_out
