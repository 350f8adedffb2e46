"""Jupyter, the process: its command line, starting it in tmux, readiness, kernels, runtime files."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from remote_agent.core import procs
from remote_agent.core.console import Console
from remote_agent.core.errors import MissingPrerequisite, StartFailed
from remote_agent.core.home import Home
from remote_agent.core.redaction import SECRET_ENV_KEYS
from remote_agent.core.store import append_private, read_json, tail
from remote_agent.core.times import now_iso
from remote_agent.jupyter import collaboration
from remote_agent.jupyter import record as jupyter_record
from remote_agent.jupyter.record import JupyterRecord
from remote_agent.jupyter.running import answers
from remote_agent.supervision.ownership import live_window_pid, running_jupyter, started_window_pid
from remote_agent.supervision.tmux import JUPYTER_WINDOW, TmuxSession

# remote-agent's login (owner's password read afresh, share links, slowed guessing): login.py.
IDENTITY_PROVIDER = "remote_agent.jupyter.login.RemoteAgentIdentityProvider"
LOGIN_HANDLER = "remote_agent.jupyter.login.ThrottledLoginHandler"


def server_args(port: int, root_dir: Path) -> list[str]:
    """Jupyter's settings for remote_agent, on the command line so no config file overrides them."""
    args = [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.base_url=/",
        # The tunnel delivers requests with its public Host; Jupyter still listens on
        # loopback only, so only the tunnel and SSH reach it.
        "--ServerApp.allow_remote_access=True",
        # Tornado would believe X-Real-Ip, X-Scheme and X-Forwarded-* from any local process;
        # the login believes them only from the tunnel (login.vet_request), where ngrok
        # terminates TLS and says so in X-Forwarded-Proto: cookies become Secure.
        "--ServerApp.trust_xheaders=False",
        "--ServerApp.certfile=",
        "--ServerApp.keyfile=",
        "--IdentityProvider.token=",
        # Refuse to start at all rather than start without a password.
        "--PasswordIdentityProvider.password_required=True",
        f"--ServerApp.identity_provider_class={IDENTITY_PROVIDER}",
        "--PasswordIdentityProvider.allow_password_change=False",
        # What the login's protections rest on, fixed here so that no config file (a tutorial's
        # jupyter_server_config) can turn them off; `doctor` names such keys where it finds them.
        f"--RemoteAgentIdentityProvider.login_handler_class={LOGIN_HANDLER}",
        "--ServerApp.disable_check_xsrf=False",
        "--ServerApp.allow_origin=",
        "--ServerApp.allow_origin_pat=",
        "--ServerApp.allow_credentials=False",
    ]
    if os.geteuid() == 0:
        args.append("--ServerApp.allow_root=True")
    return args


def has_identity_provider(pid: int) -> bool:
    """False for a Jupyter started by an earlier remote-agent: it knows no share links until its next start."""
    return f"--ServerApp.identity_provider_class={IDENTITY_PROVIDER}" in procs.cmdline(pid)


# The module each JUPYTER_APP runs; both are jupyter_server apps that take the same server args.
APP_MODULES = {"notebook": "notebook", "lab": "jupyterlab"}
APP_NAMES = {"notebook": "Jupyter Notebook", "lab": "JupyterLab"}
LAUNCHER = "remote_agent.jupyter.launcher"


def require_app(app: str) -> None:
    """JupyterLab is an extra: say how to get it rather than fail inside tmux."""
    import importlib.util

    module = APP_MODULES.get(app, app)
    if importlib.util.find_spec(module) is None:
        raise MissingPrerequisite(
            f"{APP_NAMES.get(app, app)} is not installed in {sys.prefix}.",
            f"Install it: {sys.executable} -m pip install {module}   (or use --app notebook)",
        )


def window_command(
    port: int, root_dir: Path, log: Path, app: str = "notebook", home: Path | None = None, collaborative: bool = True
) -> str:
    """The tmux window's shell command: Jupyter becomes the pane's process (exec), secrets unset."""
    unset = " ".join(f"-u {key}" for key in SECRET_ENV_KEYS)
    # The launcher runs the app module as `-m` would, with a costly import of its start deferred.
    argv = [sys.executable, "-m", LAUNCHER, APP_MODULES.get(app, "notebook"), *server_args(port, root_dir)]
    if home is not None:
        argv += collaboration.server_args(home, collaborative)
    return f"exec env {unset} {shlex.join(argv)} >>{shlex.quote(str(log))} 2>&1"


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def notebook_processes(home: Path) -> list[tuple[int, str]]:
    """Processes started from this session's notebooks or terminals that still run: (pid, command line).

    They carry Jupyter's environment (REMOTE_AGENT_HOME of this session) plus what Jupyter
    gives a kernel (JPY_PARENT_PID) or a terminal (JUPYTER_SERVER_URL); a `nohup` job keeps
    them after its kernel is gone.
    """
    found = []
    me = os.getpid()
    for pid in procs.pids():
        if pid == me:
            continue
        env = procs.environ(pid)
        if env.get("REMOTE_AGENT_HOME") != str(home) or not ({"JPY_PARENT_PID", "JUPYTER_SERVER_URL"} & env.keys()):
            continue
        if procs.is_alive(pid):
            found.append((pid, shlex.join(procs.cmdline(pid))[:200]))
    return sorted(found)


def runtime_dir() -> Path:
    """Where Jupyter writes its jpserver-PID.json, as jupyter_core says (JUPYTER_RUNTIME_DIR and the rest)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def runtime_files(pid: int) -> list[Path]:
    directory = runtime_dir()
    return [p for p in (directory / f"jpserver-{pid}.json", directory / f"jpserver-{pid}-open.html") if p.exists()]


def runtime_port(pid: int) -> int | None:
    """The port a running Jupyter wrote into its runtime file, if it answers there."""
    info = read_json(runtime_dir() / f"jpserver-{pid}.json") or {}
    port = info.get("port")
    return port if isinstance(port, int) and answers(port) else None


def remove_runtime_files(pid: int) -> None:
    """After a forced kill Jupyter cannot remove its own runtime files; remove them for it."""
    for path in runtime_files(pid):
        with contextlib.suppress(OSError):
            path.unlink()


# -- Jupyter in the session's tmux window ---------------------------------------

JUPYTER_START_TIMEOUT = 90.0
LOG_TAIL_LINES = 15
START_MARKER = "--- remote-agent: Jupyter starting"

# Variables Jupyter and its kernels keep from the serve's environment; the rest of it
# (and every secret, see redaction.SECRET_ENV_KEYS) stays out of the tmux session.
PASSED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "TZ",
    "TERM",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "TMPDIR",
)
PASSED_ENV_PREFIXES = ("LC_", "JUPYTER_", "XDG_", "CONDA_", "CUDA_", "REMOTE_AGENT_")


def passed_environment(home: Path, collaborative: bool = True) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)) and k not in SECRET_ENV_KEYS
    }
    env["REMOTE_AGENT_HOME"] = str(home)
    from remote_agent.jupyter.kernelspecs import jupyter_path  # not at the top: only a start needs it

    env["JUPYTER_PATH"] = jupyter_path(home, env.get("JUPYTER_PATH"))  # the kernels remote-agent offers
    env.update(collaboration.prepare(home, collaborative))
    return env


def launch_digest(app: str, collaborative: bool = True) -> str:
    """How Jupyter would be started now, port and directory aside.

    A running Jupyter recorded with another digest was started by another version of
    remote-agent: what changed since applies at its next start.
    """
    import hashlib
    import json

    argv = [APP_MODULES.get(app, "notebook"), *server_args(0, Path("/"))]
    argv += collaboration.server_args(Path("/"), collaborative)
    return hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunningJupyter:
    pid: int
    record: JupyterRecord

    @property
    def port(self) -> int:
        return self.record.port or 0


def find(home: Home, tmux: TmuxSession, console: Console, provider: str) -> RunningJupyter | None:
    """The Jupyter of this home that already runs, if one does."""
    from remote_agent.supervision import supervisor

    record = jupyter_record.read(home)
    pid = running_jupyter(home, record)
    if pid is not None and record is not None:
        if record.provider != provider or record.proc_start is None:
            record.provider = "ngrok" if provider == "ngrok" else "ssh"
            record.proc_start = procs.start_time(pid)  # a record of the first release lacked it
            jupyter_record.write(home, record)
        return RunningJupyter(pid, record)
    if record is not None:
        return None
    # No record (lost or corrupt): is our window still running this home's Jupyter?
    pid = live_window_pid(tmux, JUPYTER_WINDOW, home)
    if pid is None:
        return None
    port = runtime_port(pid)
    if port is None:
        supervisor.release(tmux, JUPYTER_WINDOW)  # stopped on purpose: not to be restarted
        procs.terminate(pid, 10)  # ours, but it never came up: start afresh
        return None
    found = JupyterRecord(
        pid, port, provider="ngrok" if provider == "ngrok" else "ssh", proc_start=procs.start_time(pid)
    )
    jupyter_record.write(home, found)
    console.note(f"Found Jupyter running (pid {pid}) on port {port}; its record was missing and is rewritten.")
    return RunningJupyter(pid, found)


def check_can_start(app: str, port: int) -> None:
    """Everything that would stop a new Jupyter, checked before anything starts."""
    require_app(app)
    if port_in_use(port):
        raise StartFailed(
            f"Port {port} on 127.0.0.1 is already used by another program.",
            f"Stop that program (`ss -ltnp | grep :{port}` shows it), or pick another port with --port "
            "or JUPYTER_PORT.",
        )


def start(
    home: Home,
    tmux: TmuxSession,
    console: Console,
    port: int,
    root: Path,
    app: str,
    provider: str,
    collaborative: bool = True,
) -> int:
    """Start Jupyter in the session's window; its pid."""
    record = jupyter_record.read(home)
    if record and record.pid and not procs.is_alive(record.pid):
        console.note(
            f"Jupyter had stopped (pid {record.pid}); starting a new one. "
            "Kernels from before are lost: re-run your notebooks' cells."
        )
    marker = f"{START_MARKER} at {now_iso()} ---"
    append_private(home.jupyter_log, marker + "\n")
    tmux.start_window(
        JUPYTER_WINDOW,
        window_command(port, root, home.jupyter_log, app, home.root, collaborative),
        passed_environment(home.root, collaborative),
        root,
    )
    pid = started_window_pid(tmux, JUPYTER_WINDOW, home)
    if pid is None:
        raise StartFailed("Jupyter exited at once.", *log_hint(home, marker))
    jupyter_record.write(
        home,
        JupyterRecord(
            pid,
            port,
            str(root),
            provider="ngrok" if provider == "ngrok" else "ssh",
            started_at=now_iso(),
            app=app,
            proc_start=procs.start_time(pid),
            launch=launch_digest(app, collaborative),
            collaboration=collaborative,
        ),
    )
    return pid


def supervise(home: Home, tmux: TmuxSession, running: RunningJupyter | None) -> None:
    """Have Jupyter restarted with the same command when it dies: a new one (`running` None), or one
    that runs unsupervised (started before supervision existed, as after an upgrade)."""
    from remote_agent.supervision import supervisor

    if running is not None and supervisor.history(home, JUPYTER_WINDOW) is not None:
        return
    record = jupyter_record.read(home)
    if record is None or not record.port:
        return
    root = Path(record.root_dir) if record.root_dir else Path.cwd()
    if record.collaboration is None:  # started before it existed: restarted as it was started
        command = window_command(record.port, root, home.jupyter_log, record.app)
        environment = passed_environment(home.root)
    else:
        command = window_command(record.port, root, home.jupyter_log, record.app, home.root, record.collaboration)
        environment = passed_environment(home.root, record.collaboration)
    launch = supervisor.Launch(command, environment, str(root), on_restart=jupyter_record.ON_RESTART)
    supervisor.watch(home, tmux, JUPYTER_WINDOW, launch)


def log_hint(home: Home, marker: str | None = None) -> tuple[str]:
    lines = tail(home.jupyter_log, LOG_TAIL_LINES, marker)
    shown = "\n".join("  " + line for line in lines) if lines else "  (its log is empty)"
    return (f"The last lines of {home.jupyter_log}:\n{shown}",)


def wait_until_answering(pid: int, port: int, home: Home, console: Console, started: float) -> None:
    import time

    deadline = time.monotonic() + JUPYTER_START_TIMEOUT
    while not answers(port, timeout=0.5):
        if not procs.is_alive(pid):
            console.end_progress()
            raise StartFailed("Jupyter exited while starting.", *log_hint(home, START_MARKER))
        if time.monotonic() > deadline:
            console.end_progress()
            raise StartFailed(
                f"Jupyter did not answer on 127.0.0.1:{port} within {JUPYTER_START_TIMEOUT:.0f} s.",
                *log_hint(home, START_MARKER),
            )
        console.progress("Starting Jupyter", started)
        time.sleep(0.05)
    console.end_progress()
