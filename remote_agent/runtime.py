"""What runs now: Jupyter and the keeper as their records and /proc tell, and the tunnel as the keeper recorded it.

Shared by serve, status, url and stop, so each reads the same truth the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_agent import procs
from remote_agent.jupyter_process import answers, kernel_pids
from remote_agent.state import Home, TunnelState, read_json
from remote_agent.tmux_session import TmuxSession


@dataclass
class JupyterRecord:
    """What serve wrote when it started Jupyter."""

    pid: int | None
    port: int | None
    root_dir: str | None
    provider: str
    started_at: str | None
    app: str = "notebook"  # notebook | lab; older records lack it

    @classmethod
    def load(cls, home: Home) -> JupyterRecord | None:
        data = read_json(home.jupyter_record)
        if not data:
            return None
        return cls(
            pid=data.get("pid") if isinstance(data.get("pid"), int) else None,
            port=data.get("port") if isinstance(data.get("port"), int) else None,
            root_dir=data.get("root_dir"),
            provider=str(data.get("provider") or "ngrok"),
            started_at=data.get("started_at"),
            app=str(data.get("app") or "notebook"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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


def live_window_pid(tmux: TmuxSession, window: str) -> int | None:
    pid = tmux.window_pid(window)
    return pid if pid and procs.is_alive(pid) else None


def running_jupyter(record: JupyterRecord | None) -> int | None:
    """The recorded Jupyter's pid, if that process still is our Jupyter (pids get reused)."""
    if record is None or not record.pid or not record.port or not procs.is_alive(record.pid):
        return None
    return record.pid if f"--ServerApp.port={record.port}" in procs.cmdline(record.pid) else None


def running_keeper(home: Home, tunnel: TunnelState | None) -> int | None:
    """The recorded keeper's pid, if that process still is the keeper of this home."""
    pid = tunnel.keeper_pid if tunnel else None
    if not pid or not procs.is_alive(pid) or "remote_agent.keeper" not in procs.cmdline(pid):
        return None
    return pid if procs.environ(pid).get("REMOTE_AGENT_HOME") == str(home.root) else None


def snapshot(home: Home, default_port: int) -> Snapshot:
    """Read from files and /proc only, so `url` and `status` answer without asking tmux."""
    record = JupyterRecord.load(home)
    tunnel = home.read_tunnel()
    port = record.port if record and record.port else default_port
    jupyter_pid = running_jupyter(record)
    return Snapshot(
        jupyter_pid=jupyter_pid,
        jupyter_port=port,
        jupyter_answers=bool(jupyter_pid) and answers(port),
        keeper_pid=running_keeper(home, tunnel),
        tunnel=tunnel,
        record=record,
        home=home,
    )


def remembered_root(home: Home) -> Path | None:
    data = read_json(home.remembered) or {}
    root = data.get("root_dir")
    return Path(root) if isinstance(root, str) else None
