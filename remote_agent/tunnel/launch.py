"""Starting, restarting and stopping the tunnel keeper in the session's tmux window, and waiting for its first URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from remote_agent.core import edge_secret, procs
from remote_agent.core.build import code_build
from remote_agent.core.console import Console
from remote_agent.core.errors import StartFailed
from remote_agent.core.home import Home
from remote_agent.supervision import supervisor
from remote_agent.supervision.ownership import live_window_pid, running_keeper, started_window_pid
from remote_agent.supervision.tmux import KEEPER_WINDOW, TmuxSession
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.keeper_config import KeeperConfig, write_keeper_config
from remote_agent.tunnel.state import TunnelState

TUNNEL_START_TIMEOUT = 45.0
KEEPER_STOP_TIMEOUT = 10.0


def keeper_command(home: Home) -> str:
    return supervisor.own_program_command(home, "remote_agent.tunnel.keeper")


def written_by_the_keeper(home: Home) -> list[Path]:
    """The files a running keeper writes in the home by itself (as it opens or reopens the tunnel)."""
    from remote_agent.tunnel.agent import run_config_path

    return [home.tunnel_state, run_config_path(home.ngrok_config), edge_secret.path(home.root)]


def ensure_agent_binary(ngrok_path: str | None, note: Callable[[str], None]) -> None:
    """Before serve takes its lock: the agent binary must be there (pyngrok may download it, slowly)."""
    from remote_agent.tunnel.agent import default_binary, ensure_binary

    # Its version is checked by the keeper, while Jupyter boots: too old ends serve with exit 5 and the fix.
    ensure_binary(ngrok_path or default_binary(), ngrok_path is not None, note)


def ensure_keeper(
    home: Home, tmux: TmuxSession, config: KeeperConfig, token: str, console: Console, restart_note: str
) -> int:
    """The keeper's pid: the running one if its config and code are unchanged, else a fresh one.

    `restart_note` is what the user is told when changed settings restart the keeper: which
    ones changed since they were last applied, and what that does to the public URL.
    """
    from remote_agent.tunnel.agent import write_agent_config

    agent_config_changed = _write_if_changed(home.ngrok_config, token, write_agent_config)
    changed = write_keeper_config(home, config) or agent_config_changed
    tunnel = tunnel_state.read(home)
    # The keeper of this home in our window counts even before it recorded itself: another
    # serve may just have started it (and a keeper whose state file went writes it again).
    pid = running_keeper(home, tunnel) or live_window_pid(tmux, KEEPER_WINDOW, home)
    recorded = tunnel is not None and tunnel.keeper_pid == pid
    upgraded = recorded and tunnel is not None and tunnel.keeper_build != code_build()
    if pid is not None and not changed and not upgraded:
        if supervisor.history(home, KEEPER_WINDOW) is None:
            supervisor.watch(home, tmux, KEEPER_WINDOW)  # started before supervision existed
        return pid
    if pid is not None:
        if changed:
            console.note(restart_note)
        else:
            console.note(
                "remote-agent was updated: restarting the tunnel keeper (Jupyter and its kernels keep running)."
            )
        supervisor.release(tmux, KEEPER_WINDOW)  # stopped on purpose: not to be restarted
        procs.terminate(pid, 10)
    tmux.start_window(KEEPER_WINDOW, keeper_command(home), {}, home.root)
    supervisor.watch(home, tmux, KEEPER_WINDOW)
    new_pid = started_window_pid(tmux, KEEPER_WINDOW, home)
    if new_pid is None:
        raise StartFailed("The tunnel keeper exited at once.", f"See {home.keeper_log} (`remote-agent logs`).")
    return new_pid


def _write_if_changed(path: Path, token: str, write: Callable[[Path, str], None]) -> bool:
    before = path.read_bytes() if path.exists() else None
    write(path, token)
    return path.read_bytes() != before


def stop_keeper(home: Home, tmux: TmuxSession, note: Callable[[str], None] | None = None, unhook: bool = True) -> bool:
    """Close this home's tunnel: stop its keeper (and an agent a killed keeper left), record it stopped.

    The one way the tunnel is ended on purpose, by `stop` and by a serve that switches to SSH;
    True if a keeper was running. `unhook` False leaves a tmux session of another home alone.
    """
    from remote_agent.tunnel.agent import is_our_agent

    if unhook:
        supervisor.release(tmux, KEEPER_WINDOW)  # first: what is stopped on purpose is not restarted
    pid = running_keeper(home, tunnel_state.read(home)) or live_window_pid(tmux, KEEPER_WINDOW, home)
    if pid is not None:
        if note is not None:
            note("Stopping the tunnel keeper ...")
        procs.terminate(pid, KEEPER_STOP_TIMEOUT)
    state = tunnel_state.read(home)
    if state is not None and state.agent_pid and is_our_agent(state.agent_pid, home.ngrok_config):
        procs.terminate(state.agent_pid, 5)  # its keeper was killed outright: the agent would live on
    edge_secret.discard(home.root)  # a keeper killed outright leaves its secret; the next makes a new one
    tunnel_state.mark_stopped(home)  # the one writer of tunnel.json besides the keeper: tunnel/state.py
    supervisor.forget(home, KEEPER_WINDOW)
    return pid is not None


def wait_for_tunnel(home: Home, keeper_pid: int, console: Console, started: float) -> TunnelState:
    """The keeper's first answer: a URL, or a refusal that the contract makes exit 5."""
    deadline = time.monotonic() + TUNNEL_START_TIMEOUT
    said_waiting = False
    while True:
        state = tunnel_state.read(home)
        if state is not None and state.keeper_pid == keeper_pid:
            if not said_waiting and "release the old session" in (state.last_error or ""):
                console.end_progress()
                console.note(f"The tunnel keeper is {state.last_error}; it retries every second.")
                said_waiting = True
            if state.status == "up" and state.public_url:
                console.end_progress()
                return state
            if state.status == "fatal":
                console.end_progress()
                raise StartFailed(
                    state.last_error or "ngrok refused to open the tunnel.",
                    "The tunnel keeper has stopped; fix this and run serve again.",
                )
            if state.status == "blocked":
                console.end_progress()
                raise StartFailed(
                    state.last_error or "Another ngrok agent holds the account's session.",
                    "Jupyter runs; the keeper goes on trying and the tunnel comes up by itself "
                    "(`remote-agent url` prints it then).",
                )
        if not procs.is_alive(keeper_pid):
            console.end_progress()
            raise StartFailed("The tunnel keeper exited.", f"See {home.keeper_log} (`remote-agent logs`).")
        if time.monotonic() > deadline:
            console.end_progress()
            error = state.last_error if state else None
            raise StartFailed(
                f"No public URL within {TUNNEL_START_TIMEOUT:.0f} s" + (f": {error}" if error else "."),
                "Jupyter runs; the keeper goes on trying. `remote-agent status` shows why; "
                "`remote-agent logs` shows ngrok's messages.",
            )
        console.progress("Opening the ngrok tunnel", started)
        time.sleep(0.05)
