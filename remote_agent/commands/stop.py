"""`stop`: the keeper first (it closes the tunnel), then Jupyter, politely, then the session."""

from __future__ import annotations

from remote_agent.config.settings import Settings
from remote_agent.core import edge_secret, procs
from remote_agent.core.console import Console
from remote_agent.core.state import Home, exclusive_lock
from remote_agent.jupyter.process import notebook_processes, remove_runtime_files
from remote_agent.supervision import supervisor
from remote_agent.supervision.ownership import live_window_pid, running_jupyter, running_keeper, session_owner_problem
from remote_agent.supervision.tmux import JUPYTER_WINDOW, KEEPER_WINDOW, WATCH_WINDOW, TmuxSession
from remote_agent.tunnel.agent import is_our_agent

KEEPER_STOP_TIMEOUT = 10.0
# Jupyter shuts its kernels down on SIGTERM; give them time.
JUPYTER_STOP_TIMEOUT = 30.0


def stop(settings: Settings, console: Console, tunnel_only: bool) -> int:
    home = Home(settings.home).ensure()
    tmux = TmuxSession(settings.session, home.root)
    stopped = []
    with exclusive_lock(home.lock, "stop", console.note):
        ours = session_owner_problem(tmux, home) is None  # never another home's session of the same name
        if ours:
            # Unhooked first: what is stopped on purpose must not be restarted.
            supervisor.release(tmux, KEEPER_WINDOW)
            if not tunnel_only:
                supervisor.release(tmux, JUPYTER_WINDOW)
                supervisor.release(tmux, WATCH_WINDOW)
        keeper = running_keeper(home, home.read_tunnel()) or live_window_pid(tmux, KEEPER_WINDOW, home)
        if keeper is not None:
            console.note("Stopping the tunnel keeper ...")
            procs.terminate(keeper, KEEPER_STOP_TIMEOUT)
            stopped.append("the tunnel")
        # An agent whose keeper was killed outright would otherwise live on.
        state = home.read_tunnel()
        if state is not None and state.agent_pid and is_our_agent(state.agent_pid, home.ngrok_config):
            procs.terminate(state.agent_pid, 5)
        edge_secret.discard(home.root)  # left by a keeper killed outright
        if state is not None and state.status not in ("stopped", "fatal"):
            state.status, state.public_url, state.agent_pid = "stopped", None, None
            home.write_tunnel(state)
        if not tunnel_only:
            jupyter = running_jupyter(home, home.read_jupyter()) or live_window_pid(tmux, JUPYTER_WINDOW, home)
            if jupyter is not None:
                console.note("Stopping Jupyter and its kernels ...")
                if not procs.terminate(jupyter, JUPYTER_STOP_TIMEOUT):
                    remove_runtime_files(jupyter)
                stopped.append("Jupyter")
            # Stopped on purpose: the next serve must not report lost kernels, and starts a new
            # session with the settings it is given then.
            home.forget_jupyter()
            home.end_session()
            supervisor.forget(home)
            if ours:
                tmux.kill()
            survivors = notebook_processes(home.root) if jupyter is not None else []
        else:
            supervisor.forget(home, KEEPER_WINDOW)
            survivors = []
    console.line(f"Stopped {' and '.join(stopped)}." if stopped else "Nothing was running.")
    if survivors:
        # A job started from a notebook (`nohup python train.py &`) may be meant to outlive Jupyter.
        console.line("Still running, started from a notebook (not stopped):")
        for pid, command in survivors:
            console.line(f"  pid {pid}: {command}")
        console.line("Stop one with `kill PID` if it is not meant to go on.")
    return 0
