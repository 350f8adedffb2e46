"""`serve`: make sure this home's Jupyter and tunnel keeper run in its tmux session, print the URL, then follow it.

Orchestration only, and the one place where Jupyter and the tunnel meet. The settings and
what changed since the session's last serve come from config/ (settings.py, session.py);
Jupyter is started and found by jupyter/process.py, the keeper by tunnel/launch.py (told
plain values: a KeeperConfig, a port), the password by commands/password.py; each record
has its writer in its own part (core/home.py names them); what is printed, and following
the tunnel, in commands/follow.py.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from remote_agent.commands import warm_answer
from remote_agent.commands.follow import (
    draw_qr,
    follow_until_hangup,
    print_ready,
    report_edge,
    report_restarts,
    suggest_stable_url,
)
from remote_agent.commands.password import prepare_password
from remote_agent.commands.warm_answer import Invocation
from remote_agent.config import session_record
from remote_agent.config.session import JUPYTER_KEYS, Plan, compare
from remote_agent.config.session_record import SessionRecord
from remote_agent.config.settings import Settings
from remote_agent.core import fingerprints
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput
from remote_agent.core.home import Home
from remote_agent.core.redaction import SECRET_ENV_KEYS
from remote_agent.core.store import exclusive_lock
from remote_agent.core.times import now_iso
from remote_agent.jupyter import process as jupyter_process
from remote_agent.jupyter import server_config as jupyter_config
from remote_agent.jupyter.kernels import BackgroundSync, check_running_jupyter
from remote_agent.jupyter.process import RunningJupyter
from remote_agent.jupyter.python_envs import Looked
from remote_agent.jupyter.running import answers
from remote_agent.supervision import supervisor
from remote_agent.supervision.ownership import running_keeper, session_owner_problem
from remote_agent.supervision.tmux import TmuxSession, require_tmux
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel import webhook_url
from remote_agent.tunnel.keeper_config import KeeperConfig
from remote_agent.tunnel.launch import (
    ensure_agent_binary,
    ensure_keeper,
    stop_keeper,
    wait_for_tunnel,
    written_by_the_keeper,
)
from remote_agent.tunnel.state import TunnelState


@dataclass(frozen=True)
class Up:
    jupyter_pid: int
    port: int
    started_now: bool
    keeper_pid: int | None


def plan_changes(settings: Settings, reconfigure: bool) -> Plan:
    """What this serve changes in a session that has applied settings before; refuse to weaken it unasked."""
    previous = settings.session_record
    if previous is None or previous.started_at is None:
        return Plan()  # a new session, or one migrated from the first release, which recorded no settings
    plan = compare(previous.applied, settings.values)
    tunnel = tunnel_state.read(Home(settings.home))
    refused = tunnel is not None and tunnel.status == "fatal"  # ngrok refused it: there is no endpoint to weaken
    if plan.weakening and not reconfigure and not refused:
        where = f" (the session's .env is {previous.env_file})" if previous.env_file else ""
        raise BadInput(
            "This would weaken the public endpoint: " + "; ".join(plan.weakening) + ".",
            f"To do it anyway, run serve again with --reconfigure; otherwise give the setting again{where}.",
        )
    return plan


def refuse_webhook_in_clear(settings: Settings) -> None:
    """The public URL goes to the webhook only over https, or plain http to this machine."""
    problem = webhook_url.in_clear(settings.webhook) if settings.webhook and settings.provider == "ngrok" else None
    if problem:
        raise BadInput(problem, webhook_url.IN_CLEAR_FIX)


def announce_env_files(settings: Settings, console: Console) -> None:
    if settings.env_file is not None and settings.env_file_exposed:
        console.warn(
            f"{settings.env_file} can be read by other users and may hold secrets: chmod 600 {settings.env_file}"
        )
    if settings.unread_env_file is not None:
        used = settings.env_file or "none"
        console.note(
            f"Using the running session's settings (its .env: {used}); {settings.unread_env_file} is not read. "
            f"To use it instead: serve --env-file {settings.unread_env_file}"
        )


def report_jupyter_differences(settings: Settings, running: RunningJupyter, console: Console) -> None:
    """Settings Jupyter runs without: applying them would restart it and end the kernels."""
    record = running.record
    kept = []
    if settings.port != record.port:
        kept.append(f"port {record.port} (the setting now says {settings.port})")
    if settings.app is not None and settings.app != record.app:
        kept.append(f"{jupyter_process.APP_NAMES.get(record.app, record.app)} (the setting now says {settings.app})")
    if settings.root_dir is not None and record.root_dir and str(settings.root_dir) != record.root_dir:
        kept.append(f"notebook directory {record.root_dir} (the setting now says {settings.root_dir})")
    if record.collaboration is not None and settings.collaboration != record.collaboration:
        now, then = ("on", "off") if settings.collaboration else ("off", "on")
        kept.append(f"collaboration {then} (REMOTE_AGENT_COLLABORATION now says {now})")
    if kept:
        console.warn(
            f"Jupyter keeps running with {', '.join(kept)}: applying that would end its kernels. "
            "To apply it: `remote-agent stop`, then `remote-agent serve`."
        )
    # A record without the collaboration field: started before it existed, so by an earlier version.
    if record.launch != jupyter_process.launch_digest(record.app, record.collaboration is not False):
        console.note(
            "Jupyter was started by an earlier version of remote-agent; it is kept with its kernels. "
            "What changed since applies at its next start (`remote-agent stop`, then `remote-agent serve`)."
        )


def applied_values(settings: Settings, running: RunningJupyter | None) -> dict[str, str]:
    """The settings as they now are in effect: a running Jupyter keeps the port, directory and app it has."""
    values = dict(settings.values)
    if running is not None:
        record = running.record
        values["JUPYTER_PORT"] = str(record.port)
        if record.root_dir:
            values["JUPYTER_ROOT_DIR"] = record.root_dir
        if settings.app is not None:
            values["JUPYTER_APP"] = record.app
        if record.collaboration is not None and "REMOTE_AGENT_COLLABORATION" in values:
            values["REMOTE_AGENT_COLLABORATION"] = "on" if record.collaboration else "off"
    return values


def record_session(settings: Settings, home: Home, applied: dict[str, str]) -> None:
    previous = settings.session_record
    # The session's .env: the one read, else the earlier one, else the one where the session began
    # (created later, it is read then: a token added there turns the tunnel on).
    if settings.env_file is not None:
        env_file: str | None = str(settings.env_file.resolve())
    elif previous is not None and previous.env_file:
        env_file = previous.env_file
    else:
        env_file = str(Path.cwd().resolve() / ".env")
    given = dict(settings.given)
    for key in JUPYTER_KEYS:
        # What Jupyter runs without is not kept: it applies only by `stop` and a new serve, given again.
        if key in given and given[key] != applied.get(key):
            earlier = previous.given.get(key) if previous else None
            if earlier is None:
                del given[key]
            else:
                given[key] = earlier
    session_record.write(
        home,
        SessionRecord(
            env_file=env_file,
            given=given,
            applied=applied,
            started_at=previous.started_at if previous and previous.started_at else now_iso(),
        ),
        SECRET_ENV_KEYS,
    )


def bring_up(
    settings: Settings,
    home: Home,
    tmux: TmuxSession,
    console: Console,
    plan: Plan,
    finish_password: Callable[[], bool],
) -> Up:
    """Under the lock: reuse or start Jupyter and the keeper, and record the session. No long waits here."""
    report_restarts(home, console)
    problem = session_owner_problem(tmux, home)
    if problem is not None:
        raise BadInput(problem, "Give this one a session name of its own (REMOTE_AGENT_SESSION=...), or use that home.")
    provider = settings.provider
    running = jupyter_process.find(home, tmux, console, provider)
    if running is None:
        app = settings.app or "notebook"
        jupyter_process.check_can_start(app, settings.port)
        tmux.load()  # libtmux's import overlaps the password check on the other thread
        finish_password()
        root = settings.root_dir or Path.cwd()
        pid = jupyter_process.start(home, tmux, console, settings.port, root, app, provider, settings.collaboration)
        up = Up(pid, settings.port, True, None)
        applied = applied_values(settings, None)
        applied["JUPYTER_ROOT_DIR"] = str(root)
    else:
        if finish_password():
            when = "at once" if jupyter_process.has_identity_provider(running.pid) else "at its next start"
            console.note(f"The new Jupyter password is stored; the running Jupyter takes it {when}.")
        report_jupyter_differences(settings, running, console)
        up = Up(running.pid, running.port, False, None)
        applied = applied_values(settings, running)
    if provider == "ngrok":
        # The tunnel opens while Jupyter boots; ngrok shows its 502 page until Jupyter answers.
        keeper_pid = ensure_keeper(
            home, tmux, keeper_config(settings, up.port), settings.ngrok_authtoken or "", console, tunnel_change(plan)
        )
        up = Up(up.jupyter_pid, up.port, up.started_now, keeper_pid)
    elif stop_keeper(home, tmux):
        console.note("The ngrok tunnel is closed: its public URL no longer reaches Jupyter.")
    # After the keeper, off the cold start's path: its tunnel opens meanwhile.
    jupyter_process.supervise(home, tmux, running)
    supervisor.ensure_watcher(home, tmux)
    record_session(settings, home, applied)
    return up


def keeper_config(settings: Settings, port: int) -> KeeperConfig:
    """What the keeper is told of the settings (its token goes to the agent's own config file)."""
    return KeeperConfig(
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


def tunnel_change(plan: Plan) -> str:
    what = "; ".join(c.describe() for c in plan.tunnel) or "The tunnel settings changed"
    effect = "its public URL may change" if plan.url_may_change else "it keeps its public URL"
    return f"{what}: the tunnel keeper restarts and reopens the tunnel; {effect}."


def remember_answer(
    settings: Settings,
    tmux: TmuxSession,
    invocation: Invocation,
    up: Up,
    public_url: str | None,
    facts: warm_answer.Facts | None,
    looked: Looked,
    quiet: bool,
) -> None:
    """After a quiet serve (it said nothing but the ready lines): the lines the next one would
    print, for commands/quick.py to print at once. After any other, none."""
    root = str(settings.home)
    if facts is None or not quiet or looked.incomplete or (settings.provider == "ngrok" and public_url is None):
        warm_answer.forget(root, "serve")
        return
    facts.files.update(looked.files)
    facts.folders.update(looked.folders)
    facts.trust.update(looked.trust)
    shown = io.StringIO()
    capture = Console(out=shown, err=io.StringIO())
    print_ready(settings, capture, up.jupyter_pid, up.port, False, public_url, settings.provider)
    # The panes as bring_up left them: a listing it changed was forgotten and is asked again.
    facts.pids = sorted({up.jupyter_pid, *tmux.pane_pids(), *([up.keeper_pid] if up.keeper_pid else [])})
    facts.port = up.port
    warm_answer.record(root, "serve", invocation, SECRET_ENV_KEYS, {"text": shown.getvalue()}, facts)


def facts_so_far(
    home: Home,
    password_files: dict[str, list[int] | None],
    left_by_bring_up: dict[str, list[int] | None],
    tunnel: TunnelState | None,
) -> warm_answer.Facts | None:
    """Once the answer's last record is read (the tunnel's): the home as it is now, and what the
    password was read from. None when anything but the keeper changed the home since this serve
    left it, or the tunnel's record changed since it was read."""
    now = warm_answer.home_files(str(home.root))
    keepers = {str(p) for p in written_by_the_keeper(home)}  # it opens the tunnel meanwhile
    if any(now.get(p) != left_by_bring_up.get(p) for p in now.keys() | left_by_bring_up.keys() if p not in keepers):
        return None
    if tunnel is not None and tunnel_state.read(home) != tunnel:
        return None
    facts = warm_answer.Facts(now)
    facts.files.update(password_files)
    facts.folders[str(home.kernelspecs)] = fingerprints.subfolders(str(home.kernelspecs))
    return facts


def serve(
    settings: Settings,
    console: Console,
    invocation: Invocation,
    detach: bool,
    qr: bool = False,
    reconfigure: bool = False,
) -> int:
    require_tmux()
    home = Home(settings.home).ensure()
    announce_env_files(settings, console)
    refuse_webhook_in_clear(settings)
    plan = plan_changes(settings, reconfigure)
    tmux = TmuxSession(settings.session, home.root, remember_panes=True)  # a warm serve asks tmux once
    started = time.monotonic()
    password_files = fingerprints.signatures(str(p) for p in jupyter_config.password_files(jupyter_config.config_dir()))
    # What may prompt or download happens before the lock, so that another serve or a stop never waits on it.
    finish_password = prepare_password(settings, console, home)
    if settings.provider == "ngrok" and running_keeper(home, tunnel_state.read(home)) is None:
        ensure_agent_binary(settings.ngrok_path, console.note)
    kernels = BackgroundSync(settings)  # finds the user's environments while Jupyter and the tunnel come up
    with exclusive_lock(home.lock, "serve", console.note):
        up = bring_up(settings, home, tmux, console, plan, finish_password)
        left_by_bring_up = warm_answer.home_files(str(home.root))  # before another serve may change it
    if not up.started_now:
        check_running_jupyter(settings, up.jupyter_pid, console)
    if up.started_now or not answers(up.port):
        jupyter_process.wait_until_answering(up.jupyter_pid, up.port, home, console, started)
    tunnel = wait_for_tunnel(home, up.keeper_pid, console, started) if up.keeper_pid else None
    facts = facts_so_far(home, password_files, left_by_bring_up, tunnel)
    public_url = tunnel.public_url if tunnel else None
    said_before = console.said
    print_ready(settings, console, up.jupyter_pid, up.port, up.started_now, public_url, settings.provider)
    said_ready = console.said
    kernels.finish(console)
    if qr and public_url:
        draw_qr(console, public_url)
    elif qr:
        console.note("--qr: there is no public URL to draw (the tunnel is SSH).")
    if tunnel is not None:
        report_edge(console, tunnel, None)
        suggest_stable_url(home, console, tunnel)
    if detach:
        quiet = said_before == 0 and console.said == said_ready  # nothing said but the ready lines
        remember_answer(settings, tmux, invocation, up, public_url, facts, kernels.looked(), quiet)
    if detach or tunnel is None:
        return 0
    return follow_until_hangup(home, console, tunnel, qr)
