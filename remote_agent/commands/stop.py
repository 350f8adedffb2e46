"""`stop`: the keeper first (it closes the tunnel), then Jupyter, politely, then the session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remote_agent.config import session_record
from remote_agent.config.settings import Settings
from remote_agent.core import procs
from remote_agent.core.console import Console
from remote_agent.core.errors import ExitCode
from remote_agent.core.home import Home
from remote_agent.core.store import exclusive_lock
from remote_agent.jupyter import record as jupyter_record
from remote_agent.jupyter.process import notebook_processes, remove_runtime_files
from remote_agent.supervision import supervisor
from remote_agent.supervision.ownership import live_window_pid, running_jupyter, session_owner_problem
from remote_agent.supervision.tmux import JUPYTER_WINDOW, WATCH_WINDOW, TmuxSession
from remote_agent.tunnel.launch import stop_keeper

# Jupyter shuts its kernels down on SIGTERM; give them time.
JUPYTER_STOP_TIMEOUT = 30.0


def stop(settings: Settings, console: Console, tunnel_only: bool) -> Stopped:
    home = Home(settings.home).ensure()
    tmux = TmuxSession(settings.session, home.root)
    stopped = []
    with exclusive_lock(home.lock, "stop", console.note):
        ours = session_owner_problem(tmux, home) is None  # never another home's session of the same name
        if ours and not tunnel_only:
            # Unhooked first: what is stopped on purpose must not be restarted.
            supervisor.release(tmux, JUPYTER_WINDOW)
            supervisor.release(tmux, WATCH_WINDOW)
        if stop_keeper(home, tmux, console.note, unhook=ours):
            stopped.append("the tunnel")
        if not tunnel_only:
            jupyter = running_jupyter(home, jupyter_record.read(home)) or live_window_pid(tmux, JUPYTER_WINDOW, home)
            if jupyter is not None:
                console.note("Stopping Jupyter and its kernels ...")
                if not procs.terminate(jupyter, JUPYTER_STOP_TIMEOUT):
                    remove_runtime_files(jupyter)
                stopped.append("Jupyter")
            # Stopped on purpose: the next serve must not report lost kernels, and starts a new
            # session with the settings it is given then.
            jupyter_record.forget(home)
            session_record.end(home)
            supervisor.forget(home)
            if ours:
                tmux.kill()
            survivors = notebook_processes(home.root) if jupyter is not None else []
        else:
            survivors = []
    return Stopped(stopped, survivors)


@dataclass
class Stopped:
    """What `stop` ended, and the processes started from a notebook that it left running."""

    programs: list[str]
    survivors: list[tuple[int, str]]

    exit_code = ExitCode.OK

    def lines(self) -> list[str]:
        lines = [f"Stopped {' and '.join(self.programs)}." if self.programs else "Nothing was running."]
        if self.survivors:
            # A job started from a notebook (`nohup python train.py &`) may be meant to outlive Jupyter.
            lines.append("Still running, started from a notebook (not stopped):")
            lines += [f"  pid {pid}: {command}" for pid, command in self.survivors]
            lines.append("Stop one with `kill PID` if it is not meant to go on.")
        return lines

    def document(self) -> dict[str, Any]:
        return {"stopped": self.programs, "survivors": [{"pid": p, "command": c} for p, c in self.survivors]}
