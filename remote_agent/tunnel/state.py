"""tunnel.json: what the keeper last knew about the tunnel. This module is its only writer.

The keeper writes it as the tunnel changes; `stop_keeper` (tunnel/launch.py) marks it stopped
when it ends a keeper that could not say so itself. Everyone else reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from remote_agent.core.home import Home
from remote_agent.core.records import Provider, Record
from remote_agent.core.times import now_iso

TunnelStatus = Literal["starting", "up", "down", "reconnecting", "blocked", "fatal", "stopped", "crashed"]


@dataclass
class TunnelState(Record):
    """What the keeper last knew about the tunnel."""

    VERSION = 1

    provider: Provider = "ngrok"
    status: TunnelStatus = "starting"
    public_url: str | None = None
    since: str | None = None
    reopened: int = 0
    last_error: str | None = None
    keeper_pid: int | None = None
    agent_pid: int | None = None
    port: int | None = None
    updated_at: str | None = None
    api_url: str | None = None  # the agent's local API, where status asks for region and latency
    last_url: str | None = None  # the latest public URL, kept while the tunnel is down or stopped
    url_changes: int = 0  # reopens that gave a different public URL
    reopen_reasons: dict[str, int] = field(default_factory=dict)  # why it was reopened, how often
    keeper_build: str | None = None  # the code the keeper runs (see code_build); an upgrade restarts it
    # ngrok's edge refuses visitors while the agent is fine (edge_watch.py): {"code", "message", "at"}
    edge_refused: dict[str, str] | None = None
    version: int = VERSION


def read(home: Home) -> TunnelState | None:
    return TunnelState.load(home.tunnel_state)


def write(home: Home, state: TunnelState) -> None:
    state.updated_at = now_iso()
    state.save(home.tunnel_state)


def mark_stopped(home: Home) -> TunnelState | None:
    """After its keeper was ended from outside: no public URL, no agent. The record as it was before."""
    state = read(home)
    if state is not None and state.status not in ("stopped", "fatal"):
        before = TunnelState.from_dict(state.to_dict())
        state.status, state.public_url, state.agent_pid = "stopped", None, None
        write(home, state)
        return before
    return state
