"""The tmux session that holds Jupyter and the tunnel keeper; the only user of libtmux."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from remote_agent.errors import MissingPrerequisite, RemoteAgentError

JUPYTER_WINDOW = "jupyter"
KEEPER_WINDOW = "tunnel"
# A tmux user option on the session: the REMOTE_AGENT_HOME that started it, so that two homes
# that use one session name never adopt, add to or kill each other's session.
OWNER_OPTION = "@remote_agent_home"


class TmuxError(RemoteAgentError):
    exit_code = 5


def require_tmux() -> str:
    path = shutil.which("tmux")
    if path is None:
        raise MissingPrerequisite(
            "tmux is not installed, and remote-agent runs Jupyter inside tmux.",
            "Install it: sudo apt-get install -y tmux   (Amazon Linux: sudo dnf install -y tmux)",
        )
    return path


MIN_TMUX = (3, 2)


def tmux_version() -> tuple[str, bool]:
    """(`tmux -V` output, new enough?); raises MissingPrerequisite when tmux is not installed."""
    import re

    out = subprocess.run([require_tmux(), "-V"], capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    match = re.search(r"(\d+)\.(\d+)", out)
    return out or "tmux", not match or (int(match[1]), int(match[2])) >= MIN_TMUX


class TmuxSession:
    """A named tmux session on the default tmux server (honours TMUX_TMPDIR), owned by one home."""

    def __init__(self, name: str, home: Path | None = None) -> None:
        self.name = name
        self.home = home
        self._server: Any = None

    def _libtmux(self) -> Any:
        if self._server is None:
            require_tmux()
            import libtmux

            self._server = libtmux.Server()
        return self._server

    def _session(self) -> Any:
        import libtmux.exc

        server = self._libtmux()
        try:
            if not server.has_session(self.name):
                return None
            return server.sessions.get(session_name=self.name, default=None)
        except libtmux.exc.LibTmuxException:
            return None

    def load(self) -> None:
        """Import libtmux now, e.g. while another thread waits on something else."""
        self._libtmux()

    def _query(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Reads go to tmux directly: importing libtmux costs more than the whole of `url`.
        return subprocess.run([require_tmux(), *args], capture_output=True, text=True, check=False, timeout=10)

    def exists(self) -> bool:
        return self._query("has-session", "-t", f"={self.name}").returncode == 0

    def owner(self) -> str | None:
        """The home that started the session; None when it does not say (not ours, or remote-agent 0.1's)."""
        shown = self._query("show-options", "-t", f"={self.name}", "-v", "-q", OWNER_OPTION)
        return shown.stdout.strip() or None if shown.returncode == 0 else None

    def claim(self) -> None:
        if self.home is not None:
            self._query("set-option", "-t", f"={self.name}", OWNER_OPTION, str(self.home))

    def pane_pids(self) -> list[int]:
        listing = self._query("list-panes", "-s", "-t", f"={self.name}", "-F", "#{pane_pid}")
        return [int(p) for p in listing.stdout.split() if p.isdigit()] if listing.returncode == 0 else []

    def window_pid(self, window: str) -> int | None:
        """The pid of the program in a window's pane, if the window exists."""
        listing = self._query("list-panes", "-s", "-t", f"={self.name}", "-F", "#{window_name}\t#{pane_pid}")
        if listing.returncode != 0:
            return None
        for line in listing.stdout.splitlines():
            name, _, pid = line.partition("\t")
            if name == window and pid.isdigit():
                return int(pid)
        return None

    def start_window(self, window: str, command: str, environment: dict[str, str], start_dir: Path) -> None:
        """Run `command` in a new window, creating the session if needed."""
        import libtmux.exc

        server = self._libtmux()
        try:
            session = self._session()
            if session is None:
                server.new_session(
                    session_name=self.name,
                    window_name=window,
                    window_command=command,
                    start_directory=str(start_dir),
                    environment=environment,
                    attach=False,
                )
                self.claim()
            else:
                session.new_window(
                    window_name=window,
                    window_shell=command,
                    start_directory=str(start_dir),
                    environment=environment,
                    attach=False,
                )
        except libtmux.exc.LibTmuxException as e:
            raise TmuxError(
                f"tmux could not start the {window} window: {e}.",
                f"Check `tmux ls`; a session named {self.name!r} may be in a bad state (`tmux kill-session -t "
                f"{self.name}`).",
            ) from e

    def kill(self) -> None:
        import libtmux.exc

        session = self._session()
        if session is not None:
            # It may have ended on its own meanwhile.
            with contextlib.suppress(libtmux.exc.LibTmuxException):
                session.kill()

    def attach_argv(self) -> list[str]:
        tmux = require_tmux()
        if os.environ.get("TMUX"):
            return [tmux, "switch-client", "-t", self.name]
        return [tmux, "attach-session", "-t", self.name]
