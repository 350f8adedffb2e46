"""The laptop's `ssh`: the only module that runs it, for `connect`.

Every ssh gets the user's -F, -i, -p and -o as given. The user's -o options come first
on the command line because ssh keeps the first value it reads for an option: so a user's
`-o ServerAliveInterval=60` wins over the defaults below.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import IO

from remote_agent.core.errors import MissingPrerequisite
from remote_agent.core.ssh_hint import forward_spec

# Detect a dead connection in about 45 s even when nothing is sent; a forward that cannot
# listen on its local port ends ssh instead of leaving a useless connection up.
FORWARD_DEFAULTS = (
    "ExitOnForwardFailure=yes",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=3",
    "ConnectTimeout=15",
    # A forward of its own: through a shared master connection, this ssh would not notice
    # that the connection died, and the master's life is not ours to manage.
    "ControlMaster=no",
    "ControlPath=none",
)
COMMAND_DEFAULTS = ("ConnectTimeout=15",)
UNREACHABLE = 255  # ssh's own exit status: it could not connect or log in


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in: `[USER@]HOST` and the options passed to every ssh."""

    destination: str
    key: str | None = None
    port: int | None = None
    config: str | None = None
    options: tuple[str, ...] = ()

    def argv(self, defaults: tuple[str, ...], *extra: str) -> list[str]:
        argv = ["ssh"]
        if self.config:
            argv += ["-F", self.config]
        if self.key:
            argv += ["-i", self.key]
        if self.port:
            argv += ["-p", str(self.port)]
        for option in (*self.options, *defaults):
            argv += ["-o", option]
        return [*argv, *extra, self.destination]

    @property
    def host(self) -> str:
        return self.destination.rpartition("@")[2]


def require_ssh() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise MissingPrerequisite(
            "ssh is not installed (no `ssh` on PATH).",
            "Install the OpenSSH client (macOS and most Linux laptops have it; "
            "Debian/Ubuntu: sudo apt-get install openssh-client).",
        )
    return found


def run_command(target: SshTarget, command: str) -> subprocess.CompletedProcess[str]:
    """Run `command` on the host; its stdout is returned, its stderr (and ssh's) goes to ours.

    stdin is not the terminal: ssh still asks for a passphrase or a new host key on /dev/tty.
    """
    return subprocess.run(
        [*target.argv(COMMAND_DEFAULTS, "-T", "--"), command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )


class Forward:
    """One `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE` process; what it said last is kept for the reason of a drop."""

    def __init__(self, target: SshTarget, local_port: int, remote_port: int) -> None:
        argv = target.argv(FORWARD_DEFAULTS, "-N", "-L", forward_spec(local_port, remote_port))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._said: collections.deque[str] = collections.deque(maxlen=5)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        for raw in stream or ():
            line = raw.decode(errors="replace").strip()
            if line:
                self._said.append(line)
        if stream is not None:
            stream.close()

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def reason(self) -> str:
        """Why it ended, in ssh's words where it said something."""
        self._reader.join(1)
        said = [line.rstrip(".") for line in self._said if not line.startswith("Warning: Permanently added")]
        if said:
            # e.g. "channel_setup_fwd_listener_tcpip: cannot listen to port: 12345; Could not request local forwarding"
            return "; ".join(said[-2:])
        code = self.proc.returncode
        if code is not None and code < 0:
            return f"ssh was ended by signal {-code}"
        if code == UNREACHABLE:
            return "the connection was lost or could not be made (ssh exited with status 255)"
        return f"ssh exited with status {code}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(1)
