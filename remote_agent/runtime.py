"""What runs now: Jupyter and the keeper as their records and /proc tell, and the tunnel as the keeper recorded it.

Shared by serve, status, url and stop, so each reads the same truth the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from remote_agent import procs, state
from remote_agent.jupyter_process import answers, kernel_pids
from remote_agent.state import Home, JupyterRecord, TunnelState
from remote_agent.tmux_session import KEEPER_WINDOW, TmuxSession


@dataclass
class Snapshot:
    jupyter_pid: int | None
    jupyter_port: int
    jupyter_answers: bool
    keeper_pid: int | None
    tunnel: TunnelState | None
    record: JupyterRecord | None
    home: Home | None = None  # where the session's other records are (restarts)

    @property
    def jupyter_running(self) -> bool:
        return self.jupyter_pid is not None and self.jupyter_answers

    @property
    def keeper_running(self) -> bool:
        return self.keeper_pid is not None

    @property
    def provider(self) -> str:
        return self.record.provider if self.record else "ngrok"

    @property
    def public_url(self) -> str | None:
        t = self.tunnel
        if self.keeper_running and t is not None and t.status == "up" and t.keeper_pid == self.keeper_pid:
            return t.public_url
        return None

    def kernels(self) -> int | None:
        return len(kernel_pids(self.jupyter_pid)) if self.jupyter_pid else None


JUPYTER_MARKER = "--ServerApp.port="
KEEPER_MARKER = "remote_agent.keeper"


def live_window_pid(tmux: TmuxSession, window: str, home: Home) -> int | None:
    """The pid in a window of the session, if it is this home's Jupyter or keeper."""
    pid = tmux.window_pid(window)
    marker = KEEPER_MARKER if window == KEEPER_WINDOW else JUPYTER_MARKER
    return pid if state.is_ours(pid, home, marker) else None


def started_window_pid(tmux: TmuxSession, window: str, home: Home, timeout: float = 5.0) -> int | None:
    """The pid of a program just started in a window, once its shell has exec'd it; None if it exited."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        pid = tmux.window_pid(window)
        if pid is None or not procs.is_alive(pid):
            return None
        if live_window_pid(tmux, window, home) == pid or time.monotonic() > deadline:
            return pid
        time.sleep(0.01)


def running_jupyter(home: Home, record: JupyterRecord | None) -> int | None:
    """The recorded Jupyter's pid, if that process still is this home's Jupyter (pids get reused)."""
    if record is None or not record.pid or not record.port:
        return None
    ours = state.is_ours(record.pid, home, f"{JUPYTER_MARKER}{record.port}", record.proc_start)
    return record.pid if ours else None


def running_keeper(home: Home, tunnel: TunnelState | None) -> int | None:
    """The recorded keeper's pid, if that process still is the keeper of this home."""
    pid = tunnel.keeper_pid if tunnel else None
    return pid if state.is_ours(pid, home, KEEPER_MARKER) else None


def session_owner_problem(tmux: TmuxSession, home: Home) -> str | None:
    """Why this home must not use the tmux session of its name, or None when it may (and now owns it)."""
    exists, owner = tmux.owner()
    if not exists or owner == str(home.root):
        return None
    if owner is None:
        # remote-agent 0.1 did not mark its sessions: it is ours if no process in it belongs elsewhere.
        homes = {procs.environ(pid).get("REMOTE_AGENT_HOME") for pid in tmux.pane_pids()}
        homes.discard(None)
        if homes <= {str(home.root)}:
            tmux.claim()
            return None
        owner = sorted(h for h in homes if h)[0]
    return f"The tmux session {tmux.name!r} belongs to another remote-agent home ({owner})."


def snapshot(home: Home, default_port: int) -> Snapshot:
    """Read from files and /proc only, so `url` and `status` answer without asking tmux."""
    record = home.read_jupyter()
    tunnel = home.read_tunnel()
    port = record.port if record and record.port else default_port
    jupyter_pid = running_jupyter(home, record)
    return Snapshot(
        jupyter_pid=jupyter_pid,
        jupyter_port=port,
        jupyter_answers=bool(jupyter_pid) and answers(port),
        keeper_pid=running_keeper(home, tunnel),
        tunnel=tunnel,
        record=record,
        home=home,
    )
