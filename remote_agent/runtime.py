"""What runs now: Jupyter and the keeper as found in tmux, and the tunnel as the keeper recorded it.

Shared by serve, status, url and stop, so each reads the same truth the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_agent import procs
from remote_agent.jupyter_process import answers, kernel_pids
from remote_agent.state import Home, TunnelState, read_json
from remote_agent.tmux_session import JUPYTER_WINDOW, KEEPER_WINDOW, TmuxSession


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


def snapshot(home: Home, tmux: TmuxSession, default_port: int) -> Snapshot:
    record = JupyterRecord.load(home)
    port = record.port if record and record.port else default_port
    session_exists = tmux.exists()
    jupyter_pid = live_window_pid(tmux, JUPYTER_WINDOW) if session_exists else None
    keeper_pid = live_window_pid(tmux, KEEPER_WINDOW) if session_exists else None
    return Snapshot(
        jupyter_pid=jupyter_pid,
        jupyter_port=port,
        jupyter_answers=bool(jupyter_pid) and answers(port),
        keeper_pid=keeper_pid,
        tunnel=home.read_tunnel(),
        record=record,
    )


def remembered_root(home: Home) -> Path | None:
    data = read_json(home.remembered) or {}
    root = data.get("root_dir")
    return Path(root) if isinstance(root, str) else None
