"""`serve`: make sure Jupyter and the tunnel keeper run in tmux, print the URL, then follow it."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from remote_agent import jupyter_config, procs, supervisor
from remote_agent.console import Console
from remote_agent.errors import BadInput, StartFailed
from remote_agent.jupyter_process import (
    APP_NAMES,
    answers,
    port_in_use,
    require_app,
    runtime_port,
    window_command,
)
from remote_agent.keeper_config import KeeperConfig, write_keeper_config
from remote_agent.logs import tail
from remote_agent.password import prompt_twice, warn_if_short
from remote_agent.runtime import JupyterRecord, live_window_pid, remembered_root, running_jupyter, running_keeper
from remote_agent.settings import Settings
from remote_agent.ssh_hint import host_is_private, laptop_url, ssh_command
from remote_agent.state import (
    Home,
    TunnelState,
    append_private,
    exclusive_lock,
    now_iso,
    read_json,
    write_json,
)
from remote_agent.tmux_session import JUPYTER_WINDOW, KEEPER_WINDOW, TmuxSession, require_tmux

JUPYTER_START_TIMEOUT = 90.0
TUNNEL_START_TIMEOUT = 45.0
FOLLOW_POLL = 0.1
# A killed keeper is started again by the session's supervisor within seconds.
KEEPER_BACK_WITHIN = 30.0
LOG_TAIL_LINES = 15

# Variables Jupyter and its kernels keep from the serve's environment; the rest of it
# (and every secret) stays out of the tmux session.
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


class Hangup(Exception):
    """The terminal went away (SSH dropped): stop following, quietly."""


def passed_environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
    env["REMOTE_AGENT_HOME"] = str(settings.home)
    return env


def keeper_command(settings: Settings) -> str:
    """The keeper gets an empty environment but for what it needs: its config comes from a 0600 file."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    keep = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "REMOTE_AGENT_HOME": str(settings.home),
        "PYTHONPATH": package_parent,
    }
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in keep.items())
    return f"exec env -i {assignments} {shlex.quote(sys.executable)} -m remote_agent.keeper"


# -- password ---------------------------------------------------------------


def _env_file_fingerprint(settings: Settings, current_hash: str) -> dict[str, object] | None:
    """What identifies "this .env file, unchanged, against this stored hash": nothing derived from the password."""
    if not settings.password_from_file or settings.env_file is None:
        return None
    try:
        st = settings.env_file.stat()
    except OSError:
        return None
    return {
        "env_file": str(settings.env_file),
        "inode": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
        "size": st.st_size,
        "hash_sha256": hashlib.sha256(current_hash.encode()).hexdigest(),
    }


def prepare_password(settings: Settings, console: Console, home: Home) -> Callable[[], None]:
    """Make sure Jupyter's config will hold a password hash; prompt on a terminal if none is known.

    What can fail on bad input, or needs the user, happens now. Checking a given password
    against the stored hash (argon2 takes a tenth of a second) and storing a new one run on a
    thread while tmux and the keeper start; the returned function waits for them.
    """
    directory = jupyter_config.config_dir()
    current = jupyter_config.existing_hash(directory)
    password = settings.jupyter_password
    if password is None and current:
        jupyter_config.store_hash(directory, current)  # a Notebook 6 hash moves to where Notebook 7 reads
        return lambda: None
    if password is None:
        if not sys.stdin.isatty():
            raise BadInput(
                "No Jupyter password is set, and there is no terminal to ask for one.",
                "Set JUPYTER_PASSWORD in .env, or run `python -m remote_agent password` once.",
            )
        console.note("Jupyter needs a password; it is stored only as a salted hash.")
        password = prompt_twice()
    given = password
    # A password read from an unchanged .env was checked against this very hash before: skip argon2.
    fingerprint = _env_file_fingerprint(settings, current) if current else None
    if fingerprint is not None and read_json(home.password_checked) == fingerprint:
        return lambda: None
    outcome: dict[str, BaseException | bool] = {}

    def check_and_store() -> None:
        try:
            if current and jupyter_config.check_password(current, given):
                outcome["stored"] = False
                return
            jupyter_config.store_hash(directory, jupyter_config.hash_password(given))
            outcome["stored"] = True
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    worker = threading.Thread(target=check_and_store, name="password", daemon=True)
    worker.start()

    def finish() -> None:
        worker.join()
        error = outcome.get("error")
        if isinstance(error, BaseException):
            raise error
        if outcome.get("stored"):
            warn_if_short(given, console)
        stored = jupyter_config.existing_hash(directory)
        checked = _env_file_fingerprint(settings, stored) if stored else None
        if checked is not None:
            write_json(home.password_checked, checked)

    return finish


# -- Jupyter ------------------------------------------------------------------


def root_dir_for(settings: Settings, home: Home) -> Path:
    root = settings.root_dir or remembered_root(home) or Path.cwd()
    if settings.root_dir or not home.remembered.exists():
        write_json(home.remembered, {"root_dir": str(root)})
    return root


def find_jupyter(settings: Settings, home: Home, tmux: TmuxSession, console: Console) -> tuple[int, int] | None:
    """(pid, port) of the Jupyter that already runs, if one does."""
    record = JupyterRecord.load(home)
    pid = running_jupyter(record)
    if pid is not None and record is not None and record.port:
        if record.port != settings.port:
            console.warn(
                f"Jupyter already runs on port {record.port}; keeping it. "
                "To change the port: `remote-agent stop`, then serve again."
            )
        if settings.app is not None and settings.app != record.app:
            console.warn(
                f"{APP_NAMES.get(record.app, record.app)} already runs; keeping it. "
                f"To switch to {APP_NAMES[settings.app]}: `remote-agent stop`, then serve --app {settings.app}."
            )
        if record.provider != settings.provider:
            record.provider = settings.provider
            write_json(home.jupyter_record, record.to_dict())
        # The running Jupyter keeps the password it started with; a new JUPYTER_PASSWORD is
        # checked and stored when Jupyter next starts.
        return pid, record.port
    # Without a record (lost or corrupt), ask tmux whether our window still runs one.
    pid = live_window_pid(tmux, JUPYTER_WINDOW) if record is None else None
    if pid is not None:
        # Our window, but the record is lost or corrupt: Jupyter's own runtime file tells its port.
        port = runtime_port(pid)
        if port is not None:
            write_json(home.jupyter_record, JupyterRecord(pid, port, None, settings.provider, None).to_dict())
            console.note(f"Found Jupyter running (pid {pid}) on port {port}; its record was missing and is rewritten.")
            return pid, port
        supervisor.release(tmux, JUPYTER_WINDOW)
        procs.terminate(pid, 10)
    return None


def report_restarts(home: Home, console: Console) -> None:
    """Say plainly when Jupyter came back by itself (its kernels were lost), or why it did not."""
    seen = supervisor.history(home, JUPYTER_WINDOW)
    if seen is None:
        return
    if seen.total and seen.last_restart:
        times = "once" if seen.total == 1 else f"{seen.total} times"
        console.warn(
            f"Jupyter was restarted by itself ({times}, last at {seen.last_restart}, after it was {seen.last_exit}): "
            "kernels from before then were lost; re-run your notebooks' cells."
        )
    if seen.gave_up or seen.exited:
        console.warn(f"{seen.gave_up or seen.exited}. `remote-agent logs` shows why.")


def supervise_jupyter(settings: Settings, home: Home, tmux: TmuxSession, port: int, fresh: bool) -> None:
    """Have Jupyter restarted with the same command when it dies: a new one (`fresh`), or one that
    runs unsupervised (started before supervision existed, as after an upgrade)."""
    if not fresh and supervisor.history(home, JUPYTER_WINDOW) is not None:
        return
    record = JupyterRecord.load(home)
    root = Path(record.root_dir) if record and record.root_dir else root_dir_for(settings, home)
    app = record.app if record else "notebook"
    command = window_command(port, root, home.jupyter_log, app)
    supervisor.watch(home, tmux, JUPYTER_WINDOW, supervisor.Launch(command, passed_environment(settings), str(root)))


def check_can_start(settings: Settings) -> str:
    """Everything that would stop a new Jupyter, checked before anything starts; the app to run."""
    app = settings.app or "notebook"
    require_app(app)
    if port_in_use(settings.port):
        raise StartFailed(
            f"Port {settings.port} on 127.0.0.1 is already used by another program.",
            "Stop that program (`ss -ltnp | grep :PORT` shows it), or pick another port with --port "
            "or JUPYTER_PORT.".replace("PORT", str(settings.port)),
        )
    return app


def start_jupyter(settings: Settings, home: Home, tmux: TmuxSession, console: Console, app: str) -> int:
    """Start Jupyter in the session's window; its pid."""
    record = JupyterRecord.load(home)
    if record and record.pid and not procs.is_alive(record.pid):
        console.note(
            f"Jupyter had stopped (pid {record.pid}); starting a new one. "
            "Kernels from before are lost: re-run your notebooks' cells."
        )
    root = root_dir_for(settings, home)
    marker = f"--- remote-agent: Jupyter starting at {now_iso()} ---"
    append_private(home.jupyter_log, marker + "\n")
    tmux.start_window(
        JUPYTER_WINDOW, window_command(settings.port, root, home.jupyter_log, app), passed_environment(settings), root
    )
    pid = live_window_pid(tmux, JUPYTER_WINDOW)
    if pid is None:
        raise StartFailed("Jupyter exited at once.", *_log_hint(home, marker))
    write_json(
        home.jupyter_record,
        JupyterRecord(pid, settings.port, str(root), settings.provider, now_iso(), app).to_dict(),
    )
    return pid


def _log_hint(home: Home, marker: str | None = None) -> tuple[str]:
    lines = tail(home.jupyter_log, LOG_TAIL_LINES, marker)
    shown = "\n".join("  " + line for line in lines) if lines else "  (its log is empty)"
    return (f"The last lines of {home.jupyter_log}:\n{shown}",)


def wait_for_jupyter(pid: int, port: int, home: Home, console: Console, started: float) -> None:
    deadline = time.monotonic() + JUPYTER_START_TIMEOUT
    while not answers(port, timeout=0.5):
        if not procs.is_alive(pid):
            console.end_progress()
            raise StartFailed("Jupyter exited while starting.", *_log_hint(home, "--- remote-agent: Jupyter starting"))
        if time.monotonic() > deadline:
            console.end_progress()
            raise StartFailed(
                f"Jupyter did not answer on 127.0.0.1:{port} within {JUPYTER_START_TIMEOUT:.0f} s.",
                *_log_hint(home, "--- remote-agent: Jupyter starting"),
            )
        console.progress("Starting Jupyter", started)
        time.sleep(0.05)
    console.end_progress()


# -- the keeper -----------------------------------------------------------------


def ensure_keeper(settings: Settings, home: Home, tmux: TmuxSession, port: int, console: Console) -> int:
    """The keeper's pid: the running one if its config is unchanged, else a fresh one."""
    from remote_agent.ngrok_agent import default_binary, ensure_binary, write_agent_config

    token = settings.ngrok_authtoken or ""
    agent_config_changed = _write_if_changed(home.ngrok_config, token, write_agent_config)
    config = KeeperConfig(
        port=port,
        ngrok_path=settings.ngrok_path,
        domain=settings.domain,
        basic_auth=settings.basic_auth,
        oauth_provider=settings.oauth_provider,
        allow_emails=settings.allow_emails,
        login_rate=settings.login_rate,
        on_url_change=settings.on_url_change,
        webhook=settings.webhook,
    )
    changed = write_keeper_config(home, config) or agent_config_changed
    pid = running_keeper(home, home.read_tunnel())
    if pid is not None and not changed:
        if supervisor.history(home, KEEPER_WINDOW) is None:
            supervisor.watch(home, tmux, KEEPER_WINDOW)  # started before supervision existed
        return pid
    # Starting a keeper: now the agent binary must be there (pyngrok's default path costs an import).
    ensure_binary(settings.ngrok_path or default_binary(), settings.ngrok_path is not None, console.note)
    if pid is not None:
        console.note("The tunnel settings changed; restarting the tunnel keeper.")
        supervisor.release(tmux, KEEPER_WINDOW)
        procs.terminate(pid, 10)
    stray = live_window_pid(tmux, KEEPER_WINDOW) if pid is None else None
    if stray is not None:
        supervisor.release(tmux, KEEPER_WINDOW)
        procs.terminate(stray, 10)  # a keeper window whose keeper lost its state file
    tmux.start_window(KEEPER_WINDOW, keeper_command(settings), {}, home.root)
    supervisor.watch(home, tmux, KEEPER_WINDOW)
    new_pid = live_window_pid(tmux, KEEPER_WINDOW)
    if new_pid is None:
        raise StartFailed("The tunnel keeper exited at once.", f"See {home.keeper_log} (`remote-agent logs`).")
    return new_pid


def _write_if_changed(path: Path, token: str, write: Callable[[Path, str], None]) -> bool:
    before = path.read_bytes() if path.exists() else None
    write(path, token)
    return path.read_bytes() != before


def stop_keeper(home: Home, tmux: TmuxSession) -> None:
    pid = running_keeper(home, home.read_tunnel())
    if pid is not None:
        supervisor.release(tmux, KEEPER_WINDOW)
        procs.terminate(pid, 10)
        supervisor.forget(home, KEEPER_WINDOW)


def wait_for_tunnel(home: Home, keeper_pid: int, console: Console, started: float) -> TunnelState:
    """The keeper's first answer: a URL, or a refusal that the contract makes exit 5."""
    deadline = time.monotonic() + TUNNEL_START_TIMEOUT
    while True:
        state = home.read_tunnel()
        if state is not None and state.keeper_pid == keeper_pid:
            if state.status == "up" and state.public_url:
                console.end_progress()
                return state
            if state.status == "fatal":
                console.end_progress()
                raise StartFailed(
                    state.last_error or "ngrok refused to open the tunnel.",
                    "The tunnel keeper has stopped; fix this and run serve again.",
                )
            if state.status == "blocked":
                console.end_progress()
                raise StartFailed(
                    state.last_error or "Another ngrok agent holds the account's session.",
                    "Jupyter runs; the keeper goes on trying and the tunnel comes up by itself "
                    "(`remote-agent url` prints it then).",
                )
        if not procs.is_alive(keeper_pid):
            console.end_progress()
            raise StartFailed("The tunnel keeper exited.", f"See {home.keeper_log} (`remote-agent logs`).")
        if time.monotonic() > deadline:
            console.end_progress()
            error = state.last_error if state else None
            raise StartFailed(
                f"No public URL within {TUNNEL_START_TIMEOUT:.0f} s" + (f": {error}" if error else "."),
                "Jupyter runs; the keeper goes on trying. `remote-agent status` shows why; "
                "`remote-agent logs` shows ngrok's messages.",
            )
        console.progress("Opening the ngrok tunnel", started)
        time.sleep(0.05)


# -- output ---------------------------------------------------------------------


def print_ready(
    settings: Settings, console: Console, pid: int, port: int, started_now: bool, public_url: str | None, provider: str
) -> None:
    ssh = ssh_command(port, os.environ, settings.ssh_host, settings.ssh_key, settings.laptop_port)
    local_url = f"http://127.0.0.1:{port}/"
    console.event("ready", public_url=public_url, local_url=local_url, ssh_command=ssh, jupyter_pid=pid)
    state = "started" if started_now else "already running"
    console.line(f"Jupyter     {state} (pid {pid}), on this server at {local_url}")
    if public_url:
        console.line(f"Public URL  {public_url}")
        console.line("Share it    Send the URL and the Jupyter password. On ngrok's free plan a visitor")
        console.line("            clicks 'Visit Site' once on ngrok's warning page, then logs in.")
    console.line(f"SSH         On your laptop: {ssh}")
    console.line(f"            then open {laptop_url(settings.laptop_port)} and log in with the Jupyter password.")
    if host_is_private(os.environ, settings.ssh_host):
        console.line("            (If you reach this server by another name, e.g. EC2's public DNS, use that as the")
        console.line("            host, or set REMOTE_AGENT_SSH_HOST.)")
    if provider == "ssh" and not settings.ngrok_authtoken:
        console.line("No tunnel   NGROK_AUTHTOKEN is not set, so there is no public URL. For one to share:")
        console.line(
            "            put NGROK_AUTHTOKEN=... in .env (free: https://dashboard.ngrok.com) and run serve again."
        )


def draw_qr(console: Console, url: str) -> None:
    if not console.json_mode:
        from remote_agent import qr

        qr.draw(url, console.out)


def suggest_stable_url(home: Home, console: Console, state: TunnelState) -> None:
    """Once, after a reopen changed the URL: a reserved domain would have kept it."""
    if console.json_mode or state.url_changes < 1:
        return
    config = KeeperConfig.load(home.keeper_config)
    if config is None or config.domain or (read_json(home.hints) or {}).get("ngrok_domain"):
        return
    write_json(home.hints, {**(read_json(home.hints) or {}), "ngrok_domain": now_iso()})
    console.line("Tip         The URL changed when the tunnel was reopened. For one URL that never changes,")
    console.line("            set NGROK_DOMAIN in .env to your free static domain (dashboard.ngrok.com/domains).")


def follow(home: Home, console: Console, last: TunnelState, qr: bool = False) -> int:
    """Print each new URL the keeper records, and Jupyter's restarts, until Ctrl-C or hangup."""
    console.line("")
    console.line("Following the tunnel: new URLs appear here. Ctrl-C stops following;")
    console.line("Jupyter and the tunnel keep running (`remote-agent url` prints the current URL).")
    last_url, last_status = last.public_url, last.status
    last_stat: tuple[int, int] | None = None
    keeper_pid = last.keeper_pid
    keeper_gone_since: float | None = None
    restarts = JupyterRestarts(home)
    while True:
        time.sleep(FOLLOW_POLL)
        restarts.report(console)
        try:
            st = home.tunnel_state.stat()
            current = (st.st_mtime_ns, st.st_ino)
        except OSError:
            current = None
        if current == last_stat:
            if keeper_pid and not procs.is_alive(keeper_pid):
                # The session's supervisor starts a new keeper within seconds; give up only if none comes.
                keeper_gone_since = keeper_gone_since or time.monotonic()
                if time.monotonic() - keeper_gone_since > KEEPER_BACK_WITHIN:
                    console.note("The tunnel keeper is gone; run `remote-agent serve` again to restart it.")
                    return 3
            continue
        last_stat = current
        state = home.read_tunnel()
        if state is None:
            continue
        if state.keeper_pid and state.keeper_pid != keeper_pid:
            keeper_pid, keeper_gone_since = state.keeper_pid, None
        if state.status != "up" and last_status == "up":
            console.event("tunnel_down", error=state.last_error)
            console.line(f"Tunnel down: {state.last_error or state.status}; reopening ...")
        if state.status == "up" and state.public_url and state.public_url != last_url:
            console.event("url_changed", public_url=state.public_url)
            console.line(f"New public URL  {state.public_url}")
            last_url = state.public_url
            if qr:
                draw_qr(console, state.public_url)
            suggest_stable_url(home, console, state)
        elif state.status == "up" and last_status != "up" and state.public_url == last_url:
            console.line(f"Tunnel up again, the same URL  {last_url}")
        ended = _keeper_ended(state, last_status, console)
        if ended is not None:
            return ended
        last_status = state.status


def _keeper_ended(state: TunnelState, last_status: str, console: Console) -> int | None:
    """The exit code when the keeper has ended for good; a crash is not that (it is restarted)."""
    if state.status == "crashed" and last_status != "crashed":
        console.note(f"{state.last_error or 'The tunnel keeper crashed'}; it is restarted by itself.")
    if state.status == "fatal":
        console.note(state.last_error or "ngrok refused the tunnel; the keeper stopped.")
        return 5
    if state.status == "stopped":
        console.line("The tunnel was stopped.")
        return 0
    return None


class JupyterRestarts:
    """Tells a following serve when Jupyter came back by itself, or gave up, once each."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.path = supervisor.record_path(home)
        self.stat: tuple[int, int] | None = self._stat()
        seen = supervisor.history(home, JUPYTER_WINDOW)
        self.total = seen.total if seen else 0
        self.ended = bool(seen and (seen.gave_up or seen.exited))

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def report(self, console: Console) -> None:
        current = self._stat()
        if current == self.stat:
            return
        self.stat = current
        seen = supervisor.history(self.home, JUPYTER_WINDOW)
        if seen is None:
            return
        if seen.total > self.total:
            self.total = seen.total
            record = JupyterRecord.load(self.home)
            pid = record.pid if record else None
            console.event("jupyter_restarted", jupyter_pid=pid, reason=seen.last_exit, restarts=seen.total)
            console.line(
                f"Jupyter restarted (pid {pid}): it was {seen.last_exit}. Kernels from before were lost; "
                "re-run your notebooks' cells."
            )
        ended = seen.gave_up or seen.exited
        if ended and not self.ended:
            self.ended = True
            console.event("jupyter_stopped", error=ended)
            console.note(f"{ended}. `remote-agent logs` shows why; `remote-agent serve` starts it again.")


def _raise_hangup(_signum: int, _frame: FrameType | None) -> None:
    raise Hangup()


# -- the command ------------------------------------------------------------------


def bring_up(
    settings: Settings, home: Home, tmux: TmuxSession, console: Console, started: float
) -> tuple[int, int, bool, TunnelState | None]:
    """Under the lock: reuse or start Jupyter and the keeper. (Jupyter pid, port, started now?, tunnel)."""
    report_restarts(home, console)
    found = find_jupyter(settings, home, tmux, console)
    if found is None:
        app = check_can_start(settings)
        finish_password = prepare_password(settings, console, home)
        tmux.load()  # libtmux's import overlaps the password check on the other thread
        finish_password()
        pid, port, started_now = start_jupyter(settings, home, tmux, console, app), settings.port, True
    else:
        (pid, port), started_now = found, False
    keeper_pid = None
    if settings.provider == "ngrok":
        # The tunnel opens while Jupyter boots; ngrok shows its 502 page until Jupyter answers.
        keeper_pid = ensure_keeper(settings, home, tmux, port, console)
    else:
        stop_keeper(home, tmux)
    # After the keeper, off the cold start's path: its tunnel opens meanwhile.
    supervise_jupyter(settings, home, tmux, port, fresh=started_now)
    supervisor.ensure_watcher(home, tmux)
    if started_now or not answers(port):
        wait_for_jupyter(pid, port, home, console, started)
    tunnel = wait_for_tunnel(home, keeper_pid, console, started) if keeper_pid else None
    return pid, port, started_now, tunnel


def serve(settings: Settings, console: Console, detach: bool, qr: bool = False) -> int:
    require_tmux()
    home = Home(settings.home).ensure()
    if settings.env_file is not None and settings.env_file_exposed:
        console.warn(
            f"{settings.env_file} can be read by other users and may hold secrets: chmod 600 {settings.env_file}"
        )
    tmux = TmuxSession(settings.session)
    started = time.monotonic()
    with exclusive_lock(home.lock):
        pid, port, started_now, tunnel = bring_up(settings, home, tmux, console, started)
    provider = settings.provider
    print_ready(settings, console, pid, port, started_now, tunnel.public_url if tunnel else None, provider)
    if qr and tunnel is not None and tunnel.public_url:
        draw_qr(console, tunnel.public_url)
    elif qr:
        console.note("--qr: there is no public URL to draw (the tunnel is SSH).")
    if tunnel is not None:
        suggest_stable_url(home, console, tunnel)
    if detach or tunnel is None:
        return 0
    signal.signal(signal.SIGHUP, _raise_hangup)
    try:
        return follow(home, console, tunnel, qr)
    except (Hangup, BrokenPipeError):
        return 130
    except OSError:
        # Writing to a terminal that has gone away.
        return 130
