"""Which processes and which tmux session belong to this home: Jupyter, the keeper, the session itself.

Every check goes through procs.is_ours (start time, command line, REMOTE_AGENT_HOME), so two
homes on one machine never adopt, restart or stop each other's programs.
"""

from __future__ import annotations

from typing import Protocol

from remote_agent.core import procs
from remote_agent.core.home import Home
from remote_agent.supervision.tmux import KEEPER_WINDOW, TmuxSession


class JupyterRecord(Protocol):
    """What this module reads of jupyter/record.py's record (supervision does not import the Jupyter part)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def proc_start(self) -> int | None: ...


class TunnelState(Protocol):
    """What this module reads of tunnel/state.py's record."""

    @property
    def keeper_pid(self) -> int | None: ...


JUPYTER_MARKER = "--ServerApp.port="
# The keeper's module under its name now, and under the flat name that keepers started before
# the package had parts still show in their command line (an upgrade in place keeps them).
KEEPER_MARKER = ("remote_agent.tunnel.keeper", "remote_agent.keeper")


def live_window_pid(tmux: TmuxSession, window: str, home: Home) -> int | None:
    """The pid in a window of the session, if it is this home's Jupyter or keeper."""
    pid = tmux.window_pid(window)
    marker: str | tuple[str, ...] = KEEPER_MARKER if window == KEEPER_WINDOW else JUPYTER_MARKER
    return pid if procs.is_ours(pid, home, marker) else None


def started_window_pid(tmux: TmuxSession, window: str, home: Home, timeout: float = 5.0) -> int | None:
    """The pid of a program just started in a window, once its shell has exec'd it; None if it exited."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        tmux.forget()  # the program in the window may have exec'd or ended since the last look
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
    ours = procs.is_ours(record.pid, home, f"{JUPYTER_MARKER}{record.port}", record.proc_start)
    return record.pid if ours else None


def running_keeper(home: Home, tunnel: TunnelState | None) -> int | None:
    """The recorded keeper's pid, if that process still is the keeper of this home."""
    pid = tunnel.keeper_pid if tunnel else None
    return pid if procs.is_ours(pid, home, KEEPER_MARKER) else None


def session_owner_problem(tmux: TmuxSession, home: Home) -> str | None:
    """Why this home must not use the tmux session of its name, or None when it may (and now owns it)."""
    exists, owner = tmux.owner()
    if not exists or owner == str(home.root):
        return None
    if owner is None:
        # The first release did not mark its sessions: it is ours if no process in it belongs elsewhere.
        homes = {procs.environ(pid).get("REMOTE_AGENT_HOME") for pid in tmux.pane_pids()}
        homes.discard(None)
        if homes <= {str(home.root)}:
            tmux.claim()
            return None
        owner = sorted(h for h in homes if h)[0]
    return f"The tmux session {tmux.name!r} belongs to another remote-agent home ({owner})."
