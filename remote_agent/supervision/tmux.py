"""The tmux session that holds Jupyter and the tunnel keeper; the only user of libtmux."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from remote_agent.core.errors import ExitCode, MissingPrerequisite, RemoteAgentError

if TYPE_CHECKING:
    import subprocess

JUPYTER_WINDOW = "jupyter"
KEEPER_WINDOW = "tunnel"
# A tmux user option on the session: the REMOTE_AGENT_HOME that started it, so that two homes
# that use one session name never adopt, add to or kill each other's session.
OWNER_OPTION = "@remote_agent_home"
WATCH_WINDOW = "watch"


class TmuxError(RemoteAgentError):
    exit_code = ExitCode.START_FAILED


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
    import subprocess

    out = subprocess.run([require_tmux(), "-V"], capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    match = re.search(r"(\d+)\.(\d+)", out)
    return out or "tmux", not match or (int(match[1]), int(match[2])) >= MIN_TMUX


# One line per pane of the session: everything the reads below need, in one tmux call.
PANE_FORMAT = "\t".join(("#{window_name}", "#{pane_pid}", "#{pane_dead}", "#{pane_id}", f"#{{{OWNER_OPTION}}}"))


class _Pane(NamedTuple):
    window: str
    pid: int | None
    dead: bool
    pane_id: str
    owner: str  # the session's OWNER_OPTION, "" when unset


class TmuxSession:
    """A named tmux session on the default tmux server (honours TMUX_TMPDIR), owned by one home.

    With `remember_panes`, the session's panes are listed once and the listing is kept until
    this object changes something in tmux (or `forget` is called): a short command such as a
    warm `serve` then asks tmux once. A long-lived process (the supervisor) leaves it off.
    """

    def __init__(
        self, name: str, home: Path | None = None, socket: str | None = None, remember_panes: bool = False
    ) -> None:
        self.name = name
        self.home = home
        self.socket = socket  # a server's socket path (as a tmux hook knows it); None: the default server
        self._server: Any = None
        self._remember = remember_panes
        self._listing: list[_Pane] | None = None
        self._listed = False

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
        import subprocess  # not at the top: `url` and `status` load this module and never run tmux

        where = ["-S", self.socket] if self.socket else []
        return subprocess.run([require_tmux(), *where, *args], capture_output=True, text=True, check=False, timeout=10)

    def _change(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A tmux command that changes the session: a remembered listing no longer holds."""
        self.forget()
        return self._query(*args)

    def forget(self) -> None:
        """List the panes afresh at the next read (a program in them may have started or ended)."""
        self._listing, self._listed = None, False

    def _panes_now(self) -> list[_Pane] | None:
        """The session's panes, or None when there is no such session."""
        if self._listed and self._remember:
            return self._listing
        shown = self._query("list-panes", "-s", "-t", f"={self.name}", "-F", PANE_FORMAT)
        listing = None
        if shown.returncode == 0:
            listing = []
            for line in shown.stdout.splitlines():
                window, pid, dead, pane_id, owner = [*line.split("\t"), "", "", "", ""][:5]
                listing.append(_Pane(window, int(pid) if pid.isdigit() else None, dead == "1", pane_id, owner))
        self._listing, self._listed = listing, True
        return listing

    def exists(self) -> bool:
        return self._panes_now() is not None

    def owner(self) -> tuple[bool, str | None]:
        """(does the session exist?, the home that started it: None when it does not say).

        A session of the first release, or not ours at all, exists and says nothing.
        """
        panes = self._panes_now()
        if panes is None:
            return False, None
        return True, next((p.owner for p in panes if p.owner), None)

    def claim(self) -> None:
        if self.home is not None:
            # `=NAME:` is the session itself: as a pane target, a bare `=NAME` is not found.
            self._change("set-option", "-t", f"={self.name}:", OWNER_OPTION, str(self.home))

    def pane_pids(self) -> list[int]:
        return [p.pid for p in self._panes_now() or [] if p.pid is not None]

    def window_pid(self, window: str) -> int | None:
        """The pid of the program in a window's pane, if the window exists."""
        for pane in self._panes_now() or []:
            if pane.window == window and pane.pid is not None and not pane.dead:  # a dead pane waits for its supervisor
                return pane.pid
        return None

    # -- supervision: a window whose program dies stays, and a hook tells the supervisor

    def supervise(self, window: str, on_death: str) -> None:
        """Keep `window` when its program dies and run the shell command `on_death` in the background.

        `on_death` may use tmux formats: #{pane_id}, #{pane_pid}, #{pane_dead_status},
        #{pane_dead_signal}, #{socket_path}.
        """
        if "'" in on_death:
            raise ValueError("a supervision command cannot hold a single quote")  # tmux's quoting
        # By pane id: a window of the same name whose program just ended may linger a moment.
        for pane in self._panes(window, live=True):
            self._change("set-option", "-w", "-t", pane, "remain-on-exit", "on")
            self._change("set-hook", "-w", "-t", pane, "pane-died", f"run-shell -b '{on_death}'")

    def unsupervise(self, window: str) -> None:
        """Before a deliberate stop: the window closes with its program, and no hook runs."""
        for pane in self._panes(window, live=False):
            self._change("set-hook", "-uw", "-t", pane, "pane-died")
            self._change("set-option", "-w", "-t", pane, "remain-on-exit", "off")

    def _panes(self, window: str, live: bool) -> list[str]:
        """The pane ids of the windows named `window` (only those whose program runs, if `live`)."""
        return [p.pane_id for p in self._panes_now() or [] if p.window == window and (not p.dead or not live)]

    def respawn(self, pane: str, command: str | None, environment: dict[str, str], start_dir: str | None) -> int | None:
        """Run a dead pane's program again (its first command when `command` is None); the new pid."""
        args = ["respawn-pane", "-t", pane]
        if start_dir:
            args += ["-c", start_dir]
        for key, value in environment.items():
            args += ["-e", f"{key}={value}"]
        if command:
            args.append(command)
        if self._change(*args).returncode != 0:
            return None
        shown = self._query("display-message", "-p", "-t", pane, "#{pane_pid}").stdout.strip()
        return int(shown) if shown.isdigit() else None

    def pane_window(self, pane: str) -> str | None:
        """The name of the window that holds `pane` (a %N id), if it still exists in this session."""
        shown = self._query("display-message", "-p", "-t", pane, "#{session_name}\t#{window_name}")
        session, _, window = shown.stdout.strip().partition("\t")
        return window if shown.returncode == 0 and session == self.name else None

    def close_pane(self, pane: str) -> None:
        self._change("kill-pane", "-t", pane)

    def start_window(self, window: str, command: str, environment: dict[str, str], start_dir: Path) -> None:
        """Run `command` in a new window, creating the session if needed."""
        import libtmux.exc

        server = self._libtmux()
        self.forget()
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

        self.forget()
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
