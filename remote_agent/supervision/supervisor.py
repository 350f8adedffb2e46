"""Jupyter and the tunnel keeper come back by themselves when they die: tmux is the supervisor.

`serve` marks both windows `remain-on-exit` with a `pane-died` hook (`watch`). When a
program dies, tmux keeps its pane and runs `python -m remote_agent.supervision.supervisor`, which asks
the restart policy, waits a moment and respawns the pane with the same command, settings
and environment, or gives up and says why. Nothing of ours has to stay alive for this: a
kill -9 of Jupyter, of the keeper or of a previous supervisor run is healed alike.

A deliberate stop unhooks a window first (`release`), so it is never restarted. An exit
with status 0 is deliberate too (Jupyter's "Shut Down" menu, a keeper stopped by
SIGTERM): the window closes and the record says so.

This module is the only owner of supervision.json: the restarts of each window, and how
Jupyter was launched (its command, environment and directory; nothing secret is in them).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from remote_agent.core import procs, records
from remote_agent.core.home import Home
from remote_agent.core.store import append_private, exclusive_lock, write_private
from remote_agent.core.times import now_iso
from remote_agent.supervision.restart_policy import RestartPolicy
from remote_agent.supervision.tmux import JUPYTER_WINDOW, KEEPER_WINDOW, WATCH_WINDOW, TmuxSession

POLICY = RestartPolicy()
# serve may hold the lock while it starts things; it then deals with a dead Jupyter itself.
LOCK_WAIT = 180.0
NAMES = {JUPYTER_WINDOW: "Jupyter", KEEPER_WINDOW: "the tunnel keeper", WATCH_WINDOW: "the session's watcher"}
# The watcher's rounds: tmux is nudged to reap dead panes, Jupyter's log is kept under its cap.
WATCH_INTERVAL = 1.0
JUPYTER_LOG_MAX_BYTES = 5_000_000


@dataclass
class WindowHistory:
    """What happened to one window's program since serve started it."""

    started: float | None = None  # epoch seconds of the current program's start
    restarts: list[float] = field(default_factory=list)  # automatic restarts inside the policy's window
    total: int = 0  # automatic restarts since serve started it
    last_restart: str | None = None  # ISO time
    last_exit: str | None = None  # how it last ended, in words
    gave_up: str | None = None  # why it is not restarted any more
    exited: str | None = None  # it ended by itself with status 0 and was left so


@dataclass
class Launch:
    """How serve started Jupyter, so that a restart is the same Jupyter.

    `on_restart` names the function ("module:function", called with the home's path and the new
    pid) that records a restarted program in its own record: the program registers it, so the
    supervisor never writes another part's record nor imports it.
    """

    command: str
    environment: dict[str, str]
    start_dir: str
    on_restart: str | None = None


def _v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no on_restart: Jupyter's record was written by the supervisor itself."""
    launch = old.get("jupyter_launch")
    if isinstance(launch, dict):
        launch = {**launch, "on_restart": "remote_agent.jupyter.record:restarted"}
    return {**old, "jupyter_launch": launch}


@dataclass
class Record(records.Record):
    VERSION = 2
    MIGRATIONS: ClassVar[Mapping[int, records.Migration]] = {1: _v1_to_v2}

    windows: dict[str, WindowHistory] = field(default_factory=dict)
    jupyter_launch: Launch | None = None
    version: int = VERSION

    @classmethod
    def read(cls, home: Home) -> Record:
        return cls.load(home.supervision) or cls()

    def write(self, home: Home) -> None:
        super().save(home.supervision)

    def window(self, name: str) -> WindowHistory:
        return self.windows.setdefault(name, WindowHistory())


def hook_script(home: Home) -> Path:
    return home.pane_death_hook


# -- for serve, stop and status -------------------------------------------------


def watch(home: Home, tmux: TmuxSession, window: str, launch: Launch | None = None) -> None:
    """Supervise `window`, whose program serve has just started: its restart history starts afresh."""
    script = _write_hook_script(home)
    formats = '"#{socket_path}" "SESSION" "#{pane_id}" "#{pane_dead_status}" "#{pane_dead_signal}"'
    on_death = f'/bin/sh "{script}" ' + formats.replace("SESSION", tmux.name)
    tmux.supervise(window, on_death)
    record = Record.read(home)
    record.windows[window] = WindowHistory(started=time.time())
    if launch is not None:
        record.jupyter_launch = launch
    record.write(home)


def release(tmux: TmuxSession, window: str) -> None:
    """Before a deliberate stop of `window`'s program: it must not come back."""
    tmux.unsupervise(window)


def forget(home: Home, window: str | None = None) -> None:
    """After `stop` (of one window, or of all): it is not supervised and no restart is remembered."""
    if window is None:
        home.supervision.unlink(missing_ok=True)
        return
    record = Record.read(home)
    if record.windows.pop(window, None) is not None:
        record.write(home)


def history(home: Home, window: str) -> WindowHistory | None:
    return Record.read(home).windows.get(window)


def own_program_command(home: Home, module: str, *args: str) -> str:
    """A window's shell command for one of remote-agent's own programs (the keeper, the watcher).

    It gets an empty environment but for what it needs, so no secret of the starting shell
    reaches it; its settings come from 0600 files under REMOTE_AGENT_HOME.
    """
    words = [sys.executable, "-m", module, *args]
    return f"exec env -i {_assignments(home)} {shlex.join(words)}"


def watcher_command(home: Home) -> str:
    return own_program_command(home, "remote_agent.supervision.supervisor", "--watch")


def ensure_watcher(home: Home, tmux: TmuxSession) -> None:
    """Start the session's watcher window unless it runs (serve calls this each time)."""
    if tmux.window_pid(WATCH_WINDOW) is not None:
        return
    tmux.start_window(WATCH_WINDOW, watcher_command(home), {}, home.root)
    watch(home, tmux, WATCH_WINDOW)


def _assignments(home: Home) -> str:
    """The variables remote-agent's own programs get, as quoted NAME=value words."""
    package_parent = str(Path(__file__).resolve().parents[2])  # remote_agent/supervision/supervisor.py
    keep = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "REMOTE_AGENT_HOME": str(home.root),
        "PYTHONPATH": package_parent,
    }
    return " ".join(shlex.quote(f"{k}={v}") for k, v in keep.items())


def _write_hook_script(home: Home) -> Path:
    """The hook's command: a private script, so the tmux option holds no environment and no quoting puzzle."""
    script = hook_script(home)
    if any(c in str(script) for c in "\"'$`\\"):
        raise ValueError(f"REMOTE_AGENT_HOME {home.root} holds a quote, $ or backslash: pick a plain path")
    assignments = _assignments(home)
    text = (
        "#!/bin/sh\n# Run by tmux when a supervised pane's program dies (remote-agent).\n"
        f"exec env -i {assignments} {shlex.quote(sys.executable)} -m remote_agent.supervision.supervisor"
        ' "$@" >/dev/null 2>&1\n'
    )
    if not script.exists() or script.read_text() != text:
        write_private(script, text)  # 0600: sh reads it, nobody executes it
    return script


# -- what happens when a program dies -------------------------------------------------


def describe_exit(status: str, signum: str) -> str:
    if signum.isdigit():
        number = int(signum)
        with contextlib.suppress(ValueError):
            name = signal.Signals(number).name
            if number == signal.SIGKILL:
                return f"killed by {name} (the out-of-memory killer, or kill -9)"
            return f"killed by {name}"
        return f"killed by signal {number}"
    return f"exit status {status}" if status else "ended"


def on_death(home: Home, tmux: TmuxSession, pane: str, status: str, signum: str, now: float) -> str:
    """Decide about one dead pane, and restart its program or leave it; what was done, in words."""
    window = tmux.pane_window(pane)
    if window not in NAMES:
        return "not a supervised window"
    name = NAMES[window]
    how = describe_exit(status, signum)
    with exclusive_lock(home.lock, "supervisor", timeout=LOCK_WAIT):
        record = Record.read(home)
        if window not in record.windows or (window == JUPYTER_WINDOW and record.jupyter_launch is None):
            tmux.close_pane(pane)
            return "stopped: nothing to restart"
        if _replaced(home, tmux, window):
            tmux.close_pane(pane)
            return "serve started a new one meanwhile"
        entry = record.window(window)
        entry.last_exit = how
        if status == "0" and not signum:
            entry.exited = f"{name} ended by itself at {now_iso()} ({how}); not restarted"
            record.write(home)
            tmux.close_pane(pane)
            _say(home, window, entry.exited)
            return entry.exited
        decision = POLICY.decide(how, entry.restarts, entry.started, now)
        if not decision.restart:
            entry.gave_up = f"{name} {decision.reason}"
            record.write(home)
            tmux.close_pane(pane)
            _say(home, window, entry.gave_up)
            return entry.gave_up
        entry.restarts = list(decision.restarts)
        record.write(home)
    _say(home, window, f"{name} {decision.reason} in {decision.delay:.0f} s")
    time.sleep(decision.delay)
    with exclusive_lock(home.lock, "supervisor", timeout=LOCK_WAIT):
        record = Record.read(home)
        if window not in record.windows or _replaced(home, tmux, window):
            tmux.close_pane(pane)  # stopped or started anew while we waited
            return "stopped or replaced meanwhile"
        launch = record.jupyter_launch if window == JUPYTER_WINDOW else None
        if launch is not None:
            append_private(home.jupyter_log, f"--- remote-agent: Jupyter starting at {now_iso()} (restart) ---\n")
        if launch is not None:
            pid = tmux.respawn(pane, launch.command, launch.environment, launch.start_dir)
        else:
            pid = tmux.respawn(pane, None, {}, None)  # the keeper's command carries all it needs
        if pid is None:
            return "the pane is gone"
        if launch is not None and launch.on_restart:
            _tell_started(home, launch.on_restart, pid)  # first: whoever sees the restart reads the new pid
        entry = record.window(window)
        entry.started, entry.total, entry.last_restart = time.time(), entry.total + 1, now_iso()
        record.write(home)
    return f"restarted as pid {pid}"


def _replaced(home: Home, tmux: TmuxSession, window: str) -> bool:
    """True when a live program already runs in a window of this name (serve started one)."""
    return tmux.window_pid(window) is not None


def _tell_started(home: Home, target: str, pid: int) -> None:
    """Call the "module:function" a launch names, so that the program's own part records its new pid."""
    import importlib

    module, _, function = target.partition(":")
    try:
        getattr(importlib.import_module(module), function)(home.root, pid)
    except Exception as e:  # the program runs again; a record not updated is healed by the next serve
        _say(home, JUPYTER_WINDOW, f"could not record the restarted pid {pid} ({e!r})")


def _say(home: Home, window: str, message: str) -> None:
    """Into the log of the program concerned, where `logs` shows it."""
    with contextlib.suppress(Exception):
        if window == JUPYTER_WINDOW:
            append_private(home.jupyter_log, f"--- remote-agent: {message} ---\n")
        else:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            append_private(home.keeper_log, f"{stamp} WARNING {message}\n")


def rotate(path: Path, max_bytes: int) -> bool:
    """Keep a log that its writer holds open (in append mode) under `max_bytes`, with one backup.

    The writer cannot reopen a renamed file, so the content is copied to PATH.1 and the file
    is truncated in place; its appends then start again at the beginning.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        backup = path.with_name(path.name + ".1")
        write_private(backup, path.read_text(errors="replace"))
        with path.open("r+b") as f:
            f.truncate(0)
    except OSError:
        return False
    return True


def watch_forever(home: Home, rounds: int | None = None) -> None:
    """The watcher: each second, nudge tmux (our parent) to reap dead panes, and keep Jupyter's log capped.

    tmux 3.3a was seen to leave a killed pane's process unreaped, with no exit status and no
    pane-died hook, until it next got a SIGCHLD; a spare SIGCHLD costs tmux one waitpid.
    """
    tmux_pid = os.getppid()
    done = 0
    while rounds is None or done < rounds:
        if os.getppid() != tmux_pid:
            return  # tmux is gone: so is the session
        procs.signal_pid(tmux_pid, signal.SIGCHLD)
        if done % 30 == 0:
            rotate(home.jupyter_log, JUPYTER_LOG_MAX_BYTES)
        done += 1
        time.sleep(WATCH_INTERVAL)


def main(argv: list[str]) -> int:
    """tmux's pane-died hook: SOCKET SESSION PANE STATUS SIGNAL; or --watch, the watcher window."""
    os.umask(0o077)
    home = Home(Path(os.environ["REMOTE_AGENT_HOME"]))
    if argv[:1] == ["--watch"]:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        watch_forever(home)
        return 0
    socket, session, pane, status, signum = (argv + [""] * 5)[:5]
    try:
        on_death(home, TmuxSession(session, home.root, socket or None), pane, status, signum, time.time())
    except Exception:
        _say(home, KEEPER_WINDOW, f"the supervisor failed:\n{traceback.format_exc()}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
