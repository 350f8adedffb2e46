"""What runs now: Jupyter and the keeper as their records and /proc tell, and the tunnel as the keeper recorded it.

Shared by serve, status, url and stop, so each reads the same truth the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from remote_agent.core.home import Home
from remote_agent.jupyter import record as jupyter_record
from remote_agent.jupyter.record import JupyterRecord
from remote_agent.jupyter.running import answers
from remote_agent.supervision.ownership import running_jupyter, running_keeper
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.state import TunnelState


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


def snapshot(home: Home, default_port: int) -> Snapshot:
    """Read from files and /proc only, so `url` and `status` answer without asking tmux."""
    record = jupyter_record.read(home)
    tunnel = tunnel_state.read(home)
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
