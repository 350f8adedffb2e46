"""`doctor`: check prerequisites and configuration, and say how to fix each problem."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from remote_agent.commands.runtime import snapshot
from remote_agent.config.settings import Settings
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, MissingPrerequisite
from remote_agent.core.home import Home
from remote_agent.jupyter import record as jupyter_record
from remote_agent.jupyter import server_config as jupyter_config
from remote_agent.jupyter.process import port_in_use
from remote_agent.supervision.tmux import tmux_version
from remote_agent.tunnel import state as tunnel_state


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""
    exit_code: int = 0  # the contract's code when this check fails
    note: bool = False  # worth knowing, nothing remote-agent needs: never changes the exit code


def check_tmux() -> Check:
    try:
        out, recent = tmux_version()
    except MissingPrerequisite:
        return Check(
            False,
            "tmux is not installed",
            "sudo apt-get install -y tmux  (Amazon Linux: sudo dnf install -y tmux)",
            MissingPrerequisite.exit_code,
        )
    if not recent:
        return Check(
            False,
            f"{out} is older than tmux 3.2",
            "Install a newer tmux from your distribution.",
            MissingPrerequisite.exit_code,
        )
    return Check(True, out)


def check_jupyter() -> Check:
    if importlib.util.find_spec("notebook") is None:
        return Check(
            False,
            "Jupyter Notebook is not installed in this Python",
            "scripts/setup.sh in the clone (or: pip install 'remote-agent[server]')",
            MissingPrerequisite.exit_code,
        )
    from importlib.metadata import version

    return Check(True, f"Jupyter Notebook {version('notebook')}")


def check_ngrok(settings: Settings) -> Check:
    from remote_agent.tunnel.agent import default_binary

    path = settings.ngrok_path or default_binary()
    if not os.path.isfile(path):
        if settings.ngrok_path:
            return Check(
                False,
                f"PYNGROK_NGROK_PATH names {path}, which does not exist",
                "Point PYNGROK_NGROK_PATH at the ngrok binary, or unset it so serve downloads one.",
                MissingPrerequisite.exit_code,
            )
        return Check(True, f"ngrok agent not downloaded yet; serve downloads it to {path}")
    from remote_agent.tunnel.agent import version_output

    try:
        out = version_output(path)
    except OSError as e:
        return Check(
            False,
            f"{path} does not run: {e}",
            "Reinstall ngrok or fix PYNGROK_NGROK_PATH.",
            MissingPrerequisite.exit_code,
        )
    from remote_agent.tunnel.agent import MIN_AGENT_VERSION, parse_version, too_old, update_hint, version_text

    version = parse_version(out)
    if version is None or version[0] != 3:
        return Check(
            False,
            f"{path} is not an ngrok v3 agent ({out.strip() or 'no version'})",
            "Install ngrok v3 (https://ngrok.com/download).",
            MissingPrerequisite.exit_code,
        )
    if too_old(version):
        return Check(
            False,
            f"the ngrok agent at {path} is version {version_text(version)}; remote-agent needs "
            f"{version_text(MIN_AGENT_VERSION)} or newer",
            update_hint(settings.ngrok_path),
            MissingPrerequisite.exit_code,
        )
    return Check(True, f"{out.strip()} at {path}")


def update_ngrok_agent(settings: Settings, console: Console) -> int:
    """`doctor --update-agent`: update pyngrok's own agent binary; never one the user named."""
    from remote_agent.tunnel.agent import default_binary, update_agent, update_hint, version_text

    if settings.ngrok_path:
        raise BadInput(
            f"PYNGROK_NGROK_PATH names your own ngrok agent ({settings.ngrok_path}); remote-agent leaves it alone.",
            update_hint(settings.ngrok_path),
        )
    path = default_binary()
    version = update_agent(path, console.note)
    if version is None:
        raise MissingPrerequisite(f"The ngrok agent at {path} does not report a version after the update.")
    console.line(f"The ngrok agent at {path} is version {version_text(version)}.")
    console.line(
        "A running tunnel keeps the agent it started with: `remote-agent stop --tunnel-only`, "
        "then serve, starts the new one."
    )
    return 0


def check_token(settings: Settings) -> Check:
    token = settings.ngrok_authtoken
    if not token:
        return Check(True, "no NGROK_AUTHTOKEN: serve gives the SSH command only (add a token for a public URL)")
    if not re.fullmatch(r"[A-Za-z0-9_\-]{20,}", token):
        return Check(
            False,
            "NGROK_AUTHTOKEN does not look like an ngrok authtoken",
            "Copy it again from https://dashboard.ngrok.com/get-started/your-authtoken",
            BadInput.exit_code,
        )
    return Check(True, "NGROK_AUTHTOKEN is set")


def check_password(settings: Settings) -> Check:
    if settings.jupyter_password or jupyter_config.existing_hash(jupyter_config.config_dir()):
        return Check(True, "a Jupyter password is configured")
    return Check(
        False,
        "no Jupyter password is configured",
        "Run `remote-agent password`, or set JUPYTER_PASSWORD in .env.",
        BadInput.exit_code,
    )


def check_port(settings: Settings) -> Check:
    snap = snapshot(Home(settings.home), settings.port)
    if snap.jupyter_running and snap.jupyter_port == settings.port:
        return Check(True, f"port {settings.port} is served by remote-agent's Jupyter")
    if port_in_use(settings.port):
        return Check(
            False,
            f"port {settings.port} on 127.0.0.1 is used by another program",
            f"Stop it (`ss -ltnp | grep :{settings.port}`) or set JUPYTER_PORT / --port.",
            BadInput.exit_code,
        )
    return Check(True, f"port {settings.port} is free")


def _private(path: Path, mode: int) -> bool:
    try:
        return not (path.stat().st_mode & 0o777 & ~mode)
    except OSError:
        return True


def check_permissions(settings: Settings) -> list[Check]:
    checks = []
    if settings.env_file is not None and settings.env_file_exposed:
        checks.append(
            Check(
                False,
                f"{settings.env_file} is readable by other users",
                f"chmod 600 {settings.env_file}",
                BadInput.exit_code,
            )
        )
    home = Home(settings.home)
    if home.root.exists() and not _private(home.root, 0o700):
        checks.append(Check(False, f"{home.root} is open to other users", f"chmod 700 {home.root}", BadInput.exit_code))
    from remote_agent.tunnel.agent import run_config_path

    secret_files = [
        home.ngrok_config,
        run_config_path(home.ngrok_config),
        home.keeper_config,
        jupyter_config.config_dir() / jupyter_config.SERVER_CONFIG,
    ]
    for path in secret_files:
        if path.exists() and not _private(path, 0o600):
            checks.append(
                Check(
                    False, f"{path} holds a secret and is readable by others", f"chmod 600 {path}", BadInput.exit_code
                )
            )
    if not checks:
        checks.append(Check(True, "files holding secrets are private"))
    return checks


def check_edge(settings: Settings) -> list[Check]:
    """What ngrok says about the public URL: who holds the dev domain after a 334, a refusal at the edge."""
    from remote_agent.tunnel.edge_watch import holder

    tunnel = tunnel_state.read(Home(settings.home))
    if tunnel is None:
        return []
    if tunnel.edge_refused and tunnel.public_url:
        return [
            Check(False, tunnel.edge_refused.get("message", "ngrok's edge refuses visitors"), "", BadInput.exit_code)
        ]
    refused = re.search(r"ngrok refused: (\S+) is already online", tunnel.last_error or "")
    if tunnel.status != "fatal" or refused is None:
        return []
    url = refused[1]
    found = holder(url)
    if found == "cloud_endpoint":
        return [
            Check(
                False,
                f"{url} is held by a Cloud Endpoint that ngrok created on the account's dev domain (ERR_NGROK_334)",
                "Delete it at https://dashboard.ngrok.com/endpoints, then run serve again.",
                BadInput.exit_code,
            )
        ]
    return [
        Check(
            False,
            f"{url} is served by another ngrok agent on this account (ERR_NGROK_334; {found.partition(': ')[2]})",
            "Stop that agent (https://dashboard.ngrok.com/agents lists them), give this server a domain of its own "
            "with NGROK_DOMAIN, or use --tunnel ssh; then run serve again.",
            BadInput.exit_code,
        )
    ]


def check_jupyter_overrides() -> list[Check]:
    """Protection settings in the user's Jupyter config: overridden for remote-agent's Jupyter, not for others."""
    found = jupyter_config.protection_overrides(jupyter_config.config_dir())
    if not found:
        return []
    files = sorted({str(path) for _, path in found})
    keys = ", ".join(dict.fromkeys(key for key, _ in found))
    return [
        Check(
            True,
            f"your Jupyter config sets {keys} ({', '.join(files)}): remote-agent's Jupyter ignores them, "
            "but a Jupyter you start yourself would run with them",
            "Remove them unless you need them elsewhere; they can switch off Jupyter's login and XSRF protections.",
            note=True,
        )
    ]


def check_other_logins(settings: Settings) -> Check | None:
    """Other people who can log in here can reach what is only protected by being local."""
    import getpass

    from remote_agent.commands.local_users import logged_in_others, other_accounts

    me = getpass.getuser()
    accounts = other_accounts(os.getuid())
    present = logged_in_others(me)
    if not accounts and not present:
        return None
    who = f"other accounts can log in to this server: {', '.join(accounts) or 'none'}"
    if present:
        who += f" (logged in now: {', '.join(present)})"
    exposed = [f"Jupyter's port 127.0.0.1:{settings.port} (they still need your password or a share link)"]
    if settings.provider == "ngrok":
        exposed.insert(
            0,
            "the ngrok agent's local API, which needs no login: it shows the edge's basic-auth password and lets "
            "them replace the endpoint (the keeper puts it back within seconds)",
        )
    advice = "Give accounts here only to people you would trust with your notebooks"
    if settings.provider == "ngrok":
        advice += "; prefer OAuth at the edge (--oauth) to basic auth, whose password they can read"
    return Check(True, f"{who}. Any of them can reach " + "; and ".join(exposed) + ".", advice + ".", note=True)


def check_collaboration(settings: Settings) -> Check:
    """Whether notebooks live on the server (REMOTE_AGENT_COLLABORATION), and what the running Jupyter does."""
    wanted = "on" if settings.collaboration else "off"
    what = (
        "collaboration is on: outputs are kept on the server, share links edit together"
        if settings.collaboration
        else "collaboration is off (REMOTE_AGENT_COLLABORATION=off): plain Jupyter"
    )
    record = jupyter_record.read(Home(settings.home))
    snap = snapshot(Home(settings.home), settings.port) if record is not None else None
    if snap is not None and snap.jupyter_running and record is not None and record.collaboration is not None:
        running = "on" if record.collaboration else "off"
        if running != wanted:
            what += f"; the running Jupyter has it {running} until its next start"
    missing = [m for m in ("jupyter_server_ydoc", "jupyter_server_nbmodel") if importlib.util.find_spec(m) is None]
    if settings.collaboration and missing:
        return Check(
            False,
            f"collaboration is on but {', '.join(missing)} is not installed",
            "scripts/setup.sh in the clone (or: pip install 'remote-agent[server]')",
            MissingPrerequisite.exit_code,
        )
    return Check(True, what)


def doctor(settings: Settings, console: Console, update_agent: bool = False) -> int:
    if update_agent:
        return update_ngrok_agent(settings, console)
    checks = [check_tmux(), check_jupyter(), check_password(settings), check_port(settings), check_token(settings)]
    checks.append(check_collaboration(settings))
    if settings.provider == "ngrok":
        checks.append(check_ngrok(settings))
        checks += check_edge(settings)
    checks += check_permissions(settings)
    checks += check_jupyter_overrides()
    others = check_other_logins(settings)
    if others is not None:
        checks.append(others)
    for check in checks:
        console.line(f"{'note' if check.note else 'ok ' if check.ok else 'BAD'}  {check.what}")
        if check.note and check.fix:
            console.line(f"      what to do: {check.fix}")
        elif not check.ok and check.fix:
            console.line(f"     fix: {check.fix}")
    codes = [c.exit_code for c in checks if not c.ok]
    if not codes:
        console.line("Everything remote-agent needs is in place.")
        return 0
    return MissingPrerequisite.exit_code if MissingPrerequisite.exit_code in codes else BadInput.exit_code
