"""A private OpenSSH server on 127.0.0.1 and the laptop's side of it: ssh in a terminal.

The server is the real sshd with its own host key, config and authorized key; the
account it logs in to is this machine's user, with the sandbox's HOME and TMUX_TMPDIR
(set by sshd's SetEnv), so a remote `serve` runs in the sandbox as a user's would run
in their home. Every process started here is killed by pid in `stop`.

The laptop: OpenSSH reads ~/.ssh from the password database, not from $HOME, so a
per-test laptop cannot have its own ~/.ssh/config. Its settings (the server's host key
as a known host, no prompts) live in `laptop_config` instead, passed with `-F`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, REPO, TOKEN, Sandbox, descendants, free_port, pid_alive, wait_until

SSHD = Path("/usr/sbin/sshd")
ARTIFACTS = REPO / "test-artifacts" / "ssh"
USER = "root"


class Terminal:
    """A command run in a pseudo-terminal, as in the user's terminal window; its output collected."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        # A wide window: nothing the program prints gets folded by it.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self._master = master
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not data:
                break
            self._chunks.append(data.decode(errors="replace"))
        os.close(self._master)

    @property
    def text(self) -> str:
        """Everything printed so far, as the user would read it: no carriage returns, no escapes."""
        raw = "".join(self._chunks)
        raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
        return "\n".join(line.rsplit("\r", 1)[-1] if line.strip("\r") else "" for line in raw.split("\r\n"))

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if m := regex.search(self.text):
                return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(
                    f"{shlex.join(self.argv)} exited ({self.proc.returncode}) before printing {pattern!r}:\n"
                    + self.text
                )
            return None

        result: re.Match[str] = wait_until(found, timeout, f"the terminal to show {pattern!r}")
        return result

    def kill(self) -> None:
        """SIGKILL: the client vanishes without a goodbye, as when a laptop closes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


class Sshd:
    """sshd on 127.0.0.1:port, logging in USER with `client_key` into an environment of our choosing."""

    def __init__(self, directory: Path, environment: dict[str, str], hosts: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # sshd (and what it runs) may see another /etc/hosts, bind-mounted in a mount namespace of its own.
        self.hosts: Path | None = None
        if hosts is not None:
            self.hosts = directory / "hosts"
            self.hosts.write_text(hosts)
        self.port = free_port()
        host_key = directory / "host_key"
        self.client_key = directory / "laptop_key"
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        authorized = directory / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        set_env = " ".join(f'"{k}={v}"' for k, v in environment.items())
        self.config = directory / "sshd_config"
        self.config.write_text(
            f"ListenAddress 127.0.0.1\n"
            f"Port {self.port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {directory / 'sshd.pid'}\n"
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "AllowTcpForwarding yes\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            # The account's home and tmux directory are the sandbox's (sshd would take root's from passwd).
            f"SetEnv {set_env}\n"
        )
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_key.with_suffix('.pub').read_text()}")
        # What a laptop that has connected before has in ~/.ssh: the host key known, no questions.
        self.laptop_config = directory / "laptop_ssh_config"
        self.laptop_config.write_text(
            "Host *\n"
            f"  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
            "  IdentityAgent none\n"
            "  ExitOnForwardFailure yes\n"
            "  LogLevel ERROR\n"
        )
        self.laptop_home = directory / "laptop"
        self.laptop_home.mkdir(exist_ok=True)
        self.log = directory / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.terminals: list[Terminal] = []
        self.clients: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        # sshd's privilege separation directory; Debian creates it only when the service starts.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        argv = [str(SSHD), "-D", "-e", "-f", str(self.config)]
        if self.hosts is not None:
            # unshare and sh exec in turn: the pid stays sshd's.
            mount = 'mount --bind "$0" /etc/hosts && exec "$@"'
            argv = ["unshare", "--mount", "sh", "-c", mount, str(self.hosts), *argv]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_until(self._listening, 20, f"sshd to listen on port {self.port}")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sshd exited ({self.proc.returncode}):\n{self.log.read_text()}")
        return "Server listening" in self.log.read_text()

    def laptop_env(self) -> dict[str, str]:
        """The ssh client's environment: a laptop's, with no agent and nothing of the server's."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.laptop_home), "TERM": "xterm"}

    def ssh_argv(self, *options: str, command: str | None = None) -> list[str]:
        """ssh -i KEY -p PORT [options] root@127.0.0.1 [command], with the laptop's config."""
        argv = ["ssh", "-F", str(self.laptop_config), "-i", str(self.client_key), "-p", str(self.port), *options]
        return [*argv, f"{USER}@127.0.0.1", *([command] if command else [])]

    def terminal(self, argv: list[str]) -> Terminal:
        term = Terminal(argv, self.laptop_env())
        self.terminals.append(term)
        return term

    def background(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """A client without a terminal (`ssh -N -L ...`), its output discarded."""
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.laptop_env()
        )
        self.clients.append(proc)
        return proc

    def sessions(self) -> list[int]:
        """Pids of everything running under sshd: one process per connection, and what it runs."""
        return descendants(self.proc.pid) if self.proc else []

    def remote_processes(self, *words: str) -> list[int]:
        """Pids under sshd whose command line holds `words` in a row (e.g. "-m", "remote_agent", "serve")."""
        found = []
        for pid in self.sessions():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                if any(argv[i : i + len(words)] == list(words) for i in range(len(argv))):
                    found.append(pid)
        return found

    def stop(self) -> None:
        for term in self.terminals:
            term.kill()
        for client in self.clients:
            if client.poll() is None:
                client.kill()
            client.wait(10)
            if client.stderr:
                client.stderr.close()
        if self.proc is None:
            return
        pids = [*self.sessions(), self.proc.pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        for pid in pids:
            wait_until(lambda p=pid: not pid_alive(p), 10, f"pid {pid} to end")  # type: ignore[misc]


@contextlib.contextmanager
def running_sshd(
    directory: Path, environment: dict[str, str], test_name: str, hosts: str | None = None
) -> Iterator[Sshd]:
    """sshd for one test; what each ssh terminal showed is kept in test-artifacts/ssh/TEST/."""
    missing = [str(p) for p in (SSHD, Path("/usr/bin/ssh"), Path("/usr/bin/ssh-keygen")) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: these tests run a real OpenSSH server and client. "
            "Install them: sudo apt-get install -y openssh-server openssh-client   (scripts/test.sh does).",
            pytrace=False,
        )
    server = Sshd(directory, environment, hosts)
    try:
        server.start()
        yield server
    finally:
        transcripts = ARTIFACTS / re.sub(r"[^\w.-]+", "_", test_name)
        transcripts.mkdir(parents=True, exist_ok=True)
        for old in transcripts.glob("*.txt"):
            old.unlink()
        for number, term in enumerate(server.terminals, 1):
            (transcripts / f"terminal-{number}.txt").write_text(f"$ {shlex.join(term.argv)}\n{term.text}")
        server.stop()


def serve_command(*flags: str) -> str:
    """What the user types after `ssh -t server`: into the project, then serve."""
    return "cd ~/notebooks && " + shlex.join([sys.executable, "-m", "remote_agent", "serve", *flags])


def write_user_dotenv(sandbox: Sandbox, server: Sshd, **more: str) -> dict[str, str]:
    """The project's .env, as the user keeps it: sshd passes none of the test's environment on."""
    settings = {
        "JUPYTER_PORT": str(sandbox.port),
        "JUPYTER_PASSWORD": PASSWORD,
        "NGROK_AUTHTOKEN": TOKEN,
        "PYNGROK_NGROK_PATH": str(sandbox.fake.path),
        "REMOTE_AGENT_SSH_KEY": str(server.client_key),
        # 12345 may be taken on this machine by someone else's test; a laptop may pick its port too.
        "REMOTE_AGENT_LAPTOP_PORT": str(free_port()),
        **more,
    }
    dotenv = sandbox.notebooks / ".env"
    dotenv.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))
    dotenv.chmod(0o600)
    return settings


def port_accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"ssh exited ({proc.returncode}) before forwarding port {port}: {err}")
        return port_accepts(port)

    wait_until(ready, timeout, f"ssh to forward port {port}")
