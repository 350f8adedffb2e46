"""Running Jupyter: its command line, readiness probe, kernel count and runtime files."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

from remote_agent import procs
from remote_agent.errors import MissingPrerequisite
from remote_agent.redaction import SECRET_ENV_KEYS
from remote_agent.state import read_json


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
        # ngrok terminates TLS and says so in X-Forwarded-Proto: cookies become Secure.
        "--ServerApp.trust_xheaders=True",
        "--ServerApp.certfile=",
        "--ServerApp.keyfile=",
        "--IdentityProvider.token=",
        # Refuse to start at all rather than start without a password.
        "--PasswordIdentityProvider.password_required=True",
    ]
    if os.geteuid() == 0:
        args.append("--ServerApp.allow_root=True")
    return args


# The module each JUPYTER_APP runs; both are jupyter_server apps that take the same server args.
APP_MODULES = {"notebook": "notebook", "lab": "jupyterlab"}
APP_NAMES = {"notebook": "Jupyter Notebook", "lab": "JupyterLab"}


def require_app(app: str) -> None:
    """JupyterLab is an extra: say how to get it rather than fail inside tmux."""
    import importlib.util

    module = APP_MODULES.get(app, app)
    if importlib.util.find_spec(module) is None:
        raise MissingPrerequisite(
            f"{APP_NAMES.get(app, app)} is not installed in {sys.prefix}.",
            f"Install it: {sys.executable} -m pip install {module}   (or use --app notebook)",
        )


def window_command(port: int, root_dir: Path, log: Path, app: str = "notebook") -> str:
    """The tmux window's shell command: Jupyter becomes the pane's process (exec), secrets unset."""
    unset = " ".join(f"-u {key}" for key in SECRET_ENV_KEYS)
    argv = [sys.executable, "-m", APP_MODULES.get(app, "notebook"), *server_args(port, root_dir)]
    return f"exec env {unset} {shlex.join(argv)} >>{shlex.quote(str(log))} 2>&1"


def answers(port: int, timeout: float = 1.0) -> bool:
    """True when a Jupyter server answers on 127.0.0.1:port (/api needs no login)."""
    import http.client  # not at the top: a cold serve starts Jupyter before it first needs this

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/api")
        response = conn.getresponse()
        body = response.read(4096)
        return response.status == 200 and b'"version"' in body
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def kernel_pids(jupyter_pid: int) -> list[int]:
    """Kernels are Jupyter's children started with a kernel connection file."""
    found = []
    for child in procs.children(jupyter_pid):
        argv = procs.cmdline(child)
        if any("kernel-" in part and part.endswith(".json") for part in argv):
            found.append(child)
    return found


# Jupyter's own busy/idle is behind the login, which status cannot pass: a kernel counts
# as busy when it (or a program its cell started) is seen running on a CPU during a few
# quick looks at /proc, which costs `status` about 30 ms instead of a long CPU sample.
LOOKS = 4
LOOK_INTERVAL = 0.008


def _running(pid: int) -> bool:
    """True when any thread of `pid` is on a CPU or waiting for one (state R)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                return True
        except (OSError, IndexError):
            continue
    return False


def kernel_activity(jupyter_pid: int) -> tuple[int, int]:
    """(busy, idle) kernels, by a few looks at their process trees' run states."""
    import time

    kernels = kernel_pids(jupyter_pid)
    # The trees are read once: each look then reads only their processes' states.
    trees = {kernel: (kernel, *procs.descendants(kernel)) for kernel in kernels}
    busy: set[int] = set()
    for look in range(LOOKS if kernels else 0):
        for kernel, tree in trees.items():
            if kernel not in busy and any(_running(p) for p in tree):
                busy.add(kernel)
        if len(busy) == len(kernels):
            break
        if look < LOOKS - 1:
            time.sleep(LOOK_INTERVAL)
    return len(busy), len(kernels) - len(busy)


def notebook_processes(home: Path) -> list[tuple[int, str]]:
    """Processes started from this session's notebooks or terminals that still run: (pid, command line).

    They carry Jupyter's environment (REMOTE_AGENT_HOME of this session) plus what Jupyter
    gives a kernel (JPY_PARENT_PID) or a terminal (JUPYTER_SERVER_URL); a `nohup` job keeps
    them after its kernel is gone.
    """
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        env = procs.environ(pid)
        if env.get("REMOTE_AGENT_HOME") != str(home) or not ({"JPY_PARENT_PID", "JUPYTER_SERVER_URL"} & env.keys()):
            continue
        if procs.is_alive(pid):
            found.append((pid, shlex.join(procs.cmdline(pid))[:200]))
    return sorted(found)


def runtime_dir() -> Path:
    env = os.environ.get("JUPYTER_RUNTIME_DIR")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("JUPYTER_DATA_DIR")
    if data:
        return Path(data).expanduser() / "runtime"
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "jupyter" / "runtime"


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
