"""jupyter.json: the Jupyter serve started (pid, port, how). This module is its only writer.

The supervisor, which must not know Jupyter, learns of `restarted` by name from the launch
that jupyter/process.py hands it (supervisor.Launch.on_restart), and calls it after a respawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from remote_agent.core import procs
from remote_agent.core.home import Home
from remote_agent.core.records import Migration, Provider, Record
from remote_agent.core.times import now_iso

# How the supervisor names `restarted` (a "module:function" it imports when it has respawned Jupyter).
ON_RESTART = "remote_agent.jupyter.record:restarted"


@dataclass
class JupyterRecord(Record):
    """What serve wrote when it started Jupyter. Version 1 (no version field) lacked proc_start and launch."""

    VERSION = 2
    UNVERSIONED = 1
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {1: lambda old: {"pid": None, "port": None, **old}}

    pid: int | None
    port: int | None
    root_dir: str | None = None
    provider: Provider = "ngrok"
    started_at: str | None = None
    app: str = "notebook"  # notebook | lab
    proc_start: int | None = None  # the process's start time in /proc: a reused pid is not ours
    launch: str | None = None  # a digest of how it was started: a change needs a restart to apply
    collaboration: bool | None = None  # started with the notebook on the server; None: before that existed
    version: int = VERSION


def read(home: Home) -> JupyterRecord | None:
    return JupyterRecord.load(home.jupyter_record)


def write(home: Home, record: JupyterRecord) -> None:
    record.save(home.jupyter_record)


def forget(home: Home) -> None:
    """Jupyter was stopped on purpose: the next serve must not report lost kernels."""
    home.jupyter_record.unlink(missing_ok=True)


def restarted(home_root: Path, pid: int, **_: Any) -> None:
    """The supervisor respawned Jupyter as `pid`: whoever looks next finds the new one."""
    home = Home(home_root)
    record = read(home)
    if record is not None:
        record.pid, record.started_at, record.proc_start = pid, now_iso(), procs.start_time(pid)
        write(home, record)
