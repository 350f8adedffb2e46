"""Resolving settings in one place: flag > process environment > .env file > default.

The .env file is read with python-dotenv into a dict, never into os.environ, so its
secrets do not leak into tmux, Jupyter or kernels.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

from remote_agent.errors import BadInput
from remote_agent.ssh_hint import LAPTOP_PORT

Provider = Literal["ngrok", "ssh"]
App = Literal["notebook", "lab"]

DEFAULT_PORT = 8888
DEFAULT_SESSION = "remote-agent"
MIN_BASIC_AUTH_PASSWORD = 8  # ngrok's edge refuses shorter basic-auth passwords

# Every key a user may set; .env.example documents each of them.
KEYS = (
    "NGROK_AUTHTOKEN",
    "JUPYTER_PASSWORD",
    "JUPYTER_PORT",
    "JUPYTER_ROOT_DIR",
    "NGROK_DOMAIN",
    "NGROK_BASIC_AUTH",
    "NGROK_OAUTH",
    "NGROK_OAUTH_ALLOW_EMAILS",
    "NGROK_LOGIN_RATE_LIMIT",
    "REMOTE_AGENT_SESSION",
    "REMOTE_AGENT_HOME",
    "PYNGROK_NGROK_PATH",
    "REMOTE_AGENT_SSH_HOST",
    "REMOTE_AGENT_SSH_KEY",
    "REMOTE_AGENT_LAPTOP_PORT",
    "JUPYTER_APP",
    "REMOTE_AGENT_ON_URL_CHANGE",
    "REMOTE_AGENT_WEBHOOK",
)


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, resolved once."""

    port: int = DEFAULT_PORT
    root_dir: Path | None = None
    domain: str | None = None
    session: str = DEFAULT_SESSION
    home: Path = Path("~/.local/state/remote-agent")
    ngrok_path: str | None = None
    requested_provider: Provider | None = None
    ssh_host: str | None = None
    ssh_key: str | None = None
    laptop_port: int = LAPTOP_PORT
    env_file: Path | None = None
    env_file_exposed: bool = False
    oauth_provider: str | None = None
    allow_emails: tuple[str, ...] = ()
    login_rate: int = 0  # opt-in: the edge's rate limit is a paid action (ERR_NGROK_4026)
    ngrok_authtoken: str | None = field(default=None, repr=False)
    jupyter_password: str | None = field(default=None, repr=False)
    password_from_file: bool = False  # JUPYTER_PASSWORD came from the .env file
    basic_auth: str | None = field(default=None, repr=False)
    app: App | None = None  # None: notebook, without overriding a running JupyterLab
    # Hooks for a new public URL; both may hold secrets (a Slack URL), so neither is shown.
    on_url_change: str | None = field(default=None, repr=False)
    webhook: str | None = field(default=None, repr=False)

    @property
    def provider(self) -> Provider:
        """ngrok when a token is known, unless the user asked for SSH."""
        if self.requested_provider is not None:
            return self.requested_provider
        return "ngrok" if self.ngrok_authtoken else "ssh"

    @property
    def secrets(self) -> tuple[str | None, ...]:
        basic_password = self.basic_auth.split(":", 1)[1] if self.basic_auth else None
        return (self.ngrok_authtoken, self.jupyter_password, self.basic_auth, basic_password)

    @property
    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def default_home(environ: Mapping[str, str]) -> Path:
    state_root = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(state_root).expanduser() / "remote-agent"


def env_file_path(environ: Mapping[str, str], cwd: Path) -> tuple[Path, bool]:
    """The .env file to read, and whether the user named it explicitly."""
    named = environ.get("REMOTE_AGENT_ENV_FILE")
    if named:
        return Path(named).expanduser(), True
    return cwd / ".env", False


def read_env_file(path: Path, explicit: bool) -> dict[str, str]:
    if not path.is_file():
        if explicit:
            raise BadInput(
                f"REMOTE_AGENT_ENV_FILE names {path}, which is not a file.",
                "Create it (see .env.example) or unset REMOTE_AGENT_ENV_FILE.",
            )
        return {}
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"Cannot read {path}: {e}.", "Check the file's permissions and encoding.") from e
    return {k: v for k, v in values.items() if v is not None}


def _is_exposed(path: Path) -> bool:
    """True when group or others may read a file."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _parse_port(raw: str | int, source: str) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        raise BadInput(f"{source} must be a port number, not {raw!r}.", "Use a number from 1024 to 65535.") from None
    if not 1 <= port <= 65535:
        raise BadInput(f"{source} must be from 1 to 65535, not {port}.", "Use a number from 1024 to 65535.")
    return port


def _parse_domain(raw: str) -> str:
    domain = raw.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not domain or "/" in domain or " " in domain:
        raise BadInput(
            f"NGROK_DOMAIN must be a host name such as my-name.ngrok-free.app, not {raw!r}.",
            "Copy the domain from the ngrok dashboard (Domains page).",
        )
    return domain


def _parse_basic_auth(raw: str) -> str:
    user, sep, password = raw.partition(":")
    if not sep or not user or len(password) < MIN_BASIC_AUTH_PASSWORD:
        raise BadInput(
            "NGROK_BASIC_AUTH must be user:password, with a password of at least 8 characters.",
            "Fix NGROK_BASIC_AUTH in .env, or remove it.",
        )
    return raw


def _parse_login_rate(raw: str) -> int:
    try:
        rate = int(raw)
    except ValueError:
        rate = -1
    if rate < 0:
        raise BadInput(
            f"NGROK_LOGIN_RATE_LIMIT must be a number of login attempts per minute, not {raw!r}.",
            "Use e.g. 20, or 0 to turn the limit off.",
        )
    return rate


def _parse_emails(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    emails = tuple(str(e).strip() for e in items if str(e).strip())
    for email in emails:
        if "@" not in email or " " in email or "'" in email:
            raise BadInput(f"{email!r} is not an e-mail address.", "Give addresses like ana@example.com.")
    return emails


def _parse_session(raw: str) -> str:
    if not raw or any(c in raw for c in ".: "):
        raise BadInput(
            f"REMOTE_AGENT_SESSION {raw!r} is not a valid tmux session name.",
            "Use letters, digits, '-' and '_' only.",
        )
    return raw


def _parse_app(raw: str, source: str) -> App:
    value = raw.strip().lower()
    if value in ("notebook", "lab"):
        return "lab" if value == "lab" else "notebook"
    raise BadInput(f"{source} must be notebook or lab, not {raw!r}.", "notebook is Jupyter Notebook, lab JupyterLab.")


def _parse_hook_command(raw: str) -> str:
    """Check REMOTE_AGENT_ON_URL_CHANGE's quoting; the command runs as given (see notify.py)."""
    import shlex

    try:
        words = shlex.split(raw)
    except ValueError as e:
        raise BadInput(
            f"REMOTE_AGENT_ON_URL_CHANGE cannot be parsed: {e}.",
            "Check its quotes; in .env, wrap the whole command in single quotes.",
        ) from None
    if not words:
        raise BadInput("REMOTE_AGENT_ON_URL_CHANGE is blank.", "Set a command, or remove the setting.")
    return raw.strip()


def _parse_webhook(raw: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            "REMOTE_AGENT_WEBHOOK must be an http:// or https:// URL.",
            "Use the URL your service gave you, e.g. https://hooks.slack.com/services/...",
        )
    return raw.strip()


def resolve(  # noqa: PLR0915 (one straight pass over every setting reads best)
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    cwd: Path | None = None,
) -> Settings:
    """Merge flags, the process environment, the .env file and defaults into Settings.

    `flags` holds command-line values by setting name (port, root_dir, tunnel, domain);
    None means "not given".
    """
    cwd = cwd or Path.cwd()
    path, explicit = env_file_path(environ, cwd)
    from_file = read_env_file(path, explicit)

    def pick(key: str) -> str | None:
        value = environ.get(key)
        if value is None or value == "":
            value = from_file.get(key)
        return value or None

    port_flag = flags.get("port")
    if port_flag is not None:
        port = _parse_port(str(port_flag), "--port")
    elif (raw_port := pick("JUPYTER_PORT")) is not None:
        port = _parse_port(raw_port, "JUPYTER_PORT")
    else:
        port = DEFAULT_PORT

    root_flag = flags.get("root_dir")
    root_raw = str(root_flag) if root_flag is not None else pick("JUPYTER_ROOT_DIR")
    root_dir = None
    if root_raw is not None:
        root_dir = Path(root_raw).expanduser()
        if not root_dir.is_absolute():
            root_dir = cwd / root_dir
        if not root_dir.is_dir():
            source = "--root-dir" if root_flag is not None else "JUPYTER_ROOT_DIR"
            raise BadInput(f"{source} {root_dir} is not a directory.", "Create it, or point to another one.")

    domain_flag = flags.get("domain")
    domain_raw = str(domain_flag) if domain_flag is not None else pick("NGROK_DOMAIN")
    tunnel_flag = flags.get("tunnel")
    requested: Provider | None = None
    if tunnel_flag is not None:
        if tunnel_flag not in ("ngrok", "ssh"):
            raise BadInput(f"--tunnel must be ngrok or ssh, not {tunnel_flag!r}.")
        requested = "ngrok" if tunnel_flag == "ngrok" else "ssh"

    token = pick("NGROK_AUTHTOKEN")
    if requested == "ngrok" and not token:
        raise BadInput(
            "--tunnel ngrok needs an ngrok authtoken, and none is set.",
            "Put NGROK_AUTHTOKEN=... in .env (https://dashboard.ngrok.com/get-started/your-authtoken), "
            "or use --tunnel ssh.",
        )

    app_flag = flags.get("app")
    app_raw = str(app_flag) if app_flag is not None else pick("JUPYTER_APP")
    hook_raw = pick("REMOTE_AGENT_ON_URL_CHANGE")
    webhook_raw = pick("REMOTE_AGENT_WEBHOOK")
    oauth_flag = flags.get("oauth")
    oauth = str(oauth_flag) if oauth_flag is not None else pick("NGROK_OAUTH")
    emails_flag = flags.get("allow_emails")
    emails = _parse_emails(emails_flag if emails_flag else pick("NGROK_OAUTH_ALLOW_EMAILS") or "")
    if emails and not oauth:
        raise BadInput(
            "An e-mail allow-list needs OAuth at the edge.",
            "Add --oauth google (or set NGROK_OAUTH), or drop --allow-email.",
        )
    rate_raw = pick("NGROK_LOGIN_RATE_LIMIT")

    basic_raw = pick("NGROK_BASIC_AUTH")
    laptop_raw = pick("REMOTE_AGENT_LAPTOP_PORT")
    home_raw = pick("REMOTE_AGENT_HOME")
    settings = Settings(
        port=port,
        root_dir=root_dir,
        domain=_parse_domain(domain_raw) if domain_raw else None,
        session=_parse_session(pick("REMOTE_AGENT_SESSION") or DEFAULT_SESSION),
        home=Path(home_raw).expanduser() if home_raw else default_home(environ),
        ngrok_path=pick("PYNGROK_NGROK_PATH"),
        requested_provider=requested,
        ssh_host=pick("REMOTE_AGENT_SSH_HOST"),
        ssh_key=pick("REMOTE_AGENT_SSH_KEY"),
        laptop_port=_parse_port(laptop_raw, "REMOTE_AGENT_LAPTOP_PORT") if laptop_raw else LAPTOP_PORT,
        env_file=path if path.is_file() else None,
        env_file_exposed=path.is_file() and _is_exposed(path),
        ngrok_authtoken=token,
        jupyter_password=pick("JUPYTER_PASSWORD"),
        password_from_file=not environ.get("JUPYTER_PASSWORD") and bool(from_file.get("JUPYTER_PASSWORD")),
        basic_auth=_parse_basic_auth(basic_raw) if basic_raw else None,
        oauth_provider=oauth or None,
        allow_emails=emails,
        login_rate=_parse_login_rate(rate_raw) if rate_raw is not None else 0,
        app=_parse_app(app_raw, "--app" if app_flag is not None else "JUPYTER_APP") if app_raw else None,
        on_url_change=_parse_hook_command(hook_raw) if hook_raw else None,
        webhook=_parse_webhook(webhook_raw) if webhook_raw else None,
    )
    return settings


def remove_secrets_from_environ() -> None:
    """Drop secret variables from this process, so no child inherits them.

    Called once settings are resolved: tmux starts its server with our environment,
    and everything it runs (Jupyter, kernels, the keeper, the agent) would see them.
    """
    from remote_agent.redaction import SECRET_ENV_KEYS

    for key in SECRET_ENV_KEYS:
        os.environ.pop(key, None)
