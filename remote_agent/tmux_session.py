"""The tmux session that holds Jupyter and the tunnel keeper; the only user of libtmux."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from remote_agent.errors import MissingPrerequisite, RemoteAgentError

JUPYTER_WINDOW = "jupyter"
KEEPER_WINDOW = "tunnel"


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


class TmuxSession:
    """A named tmux session on the default tmux server (honours TMUX_TMPDIR)."""

    def __init__(self, name: str) -> None:
        self.name = name
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

    def exists(self) -> bool:
        return self._session() is not None

    def _window(self, window: str) -> Any:
        session = self._session()
        if session is None:
            return None
        return next((w for w in session.windows if w.window_name == window), None)

    def window_pid(self, window: str) -> int | None:
        """The pid of the program in a window's pane, if the window exists."""
        found = self._window(window)
        if found is None:
            return None
        pane = found.active_pane
        pid = getattr(pane, "pane_pid", None) if pane is not None else None
        return int(pid) if pid else None

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
