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

from remote_agent.core.errors import BadInput
from remote_agent.core.redaction import SECRET_ENV_KEYS
from remote_agent.core.ssh_hint import LAPTOP_PORT
from remote_agent.core.state import Home, Provider, SessionRecord

App = Literal["notebook", "lab"]

DEFAULT_PORT = 8888
DEFAULT_SESSION = "remote-agent"
MIN_BASIC_AUTH_PASSWORD = 8  # ngrok's edge refuses shorter basic-auth passwords ...
MAX_BASIC_AUTH_PASSWORD = 128  # ... and longer ones

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
    "REMOTE_AGENT_KERNELS",
    "REMOTE_AGENT_COLLABORATION",
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
    env_file: Path | None = None  # the .env that was read: the session's, or one named with --env-file
    env_file_exposed: bool = False
    env_file_named: bool = False  # named with --env-file / REMOTE_AGENT_ENV_FILE
    unread_env_file: Path | None = None  # a .env where the command ran, not read: the session has its own
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
    kernels: Literal["auto", "off"] = "auto"  # off: Jupyter offers only remote-agent's own Python
    collaboration: bool = True  # the notebook lives on the server (collaboration.py); off: plain Jupyter
    # Every setting's text by key as resolved (secrets included), and those given on purpose
    # by this command or an earlier serve of the session: what serve records and compares.
    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    given: Mapping[str, str] = field(default_factory=dict, repr=False)
    session_record: SessionRecord | None = field(default=None, repr=False)  # the running session's, if any

    @property
    def provider(self) -> Provider:
        """ngrok when a token is known, unless the user asked for SSH."""
        return provider_of(self.values) if self.values else ("ngrok" if self.ngrok_authtoken else "ssh")


def default_home(environ: Mapping[str, str]) -> Path:
    state_root = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(state_root).expanduser() / "remote-agent"


def read_env_file(path: Path, explicit: bool) -> dict[str, str]:
    if not path.is_file():
        if explicit:
            raise BadInput(
                f"--env-file (or REMOTE_AGENT_ENV_FILE) names {path}, which is not a file.",
                "Create it (see .env.example), or name another one.",
            )
        return {}
    from dotenv import dotenv_values  # not at the top: only a session with a .env reads one

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
    """As ngrok's edge checks it: a password of 8 to 128 characters, and no `${` (ngrok evaluates
    `${...}` in a credential as an expression, so the password would not be what it says)."""
    user, sep, password = raw.partition(":")
    if not sep or not user or not MIN_BASIC_AUTH_PASSWORD <= len(password) <= MAX_BASIC_AUTH_PASSWORD:
        raise BadInput(
            "NGROK_BASIC_AUTH must be user:password, with a password of 8 to 128 characters.",
            "Fix NGROK_BASIC_AUTH in .env, or remove it.",
        )
    if "${" in raw:
        raise BadInput(
            "NGROK_BASIC_AUTH must not contain '${': ngrok reads it as an expression, not as the password.",
            "Choose a user and password without '${' in NGROK_BASIC_AUTH in .env.",
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


def _parse_kernels(raw: str) -> Literal["auto", "off"]:
    value = raw.strip().lower()
    if value not in ("auto", "off"):
        raise BadInput(
            f"REMOTE_AGENT_KERNELS must be auto or off, not {raw!r}.", "auto offers your Python environments."
        )
    return "off" if value == "off" else "auto"


def _parse_collaboration(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise BadInput(
            f"REMOTE_AGENT_COLLABORATION must be on or off, not {raw!r}.",
            "on keeps outputs on the server and lets share links edit together; off serves plain Jupyter.",
        )
    return value == "on"


# Command-line flags and the setting each one gives. `--tunnel` has no variable: its key is
# only ever given on purpose.
TUNNEL_KEY = "tunnel"
FLAG_KEYS = {
    "port": "JUPYTER_PORT",
    "root_dir": "JUPYTER_ROOT_DIR",
    "domain": "NGROK_DOMAIN",
    "tunnel": TUNNEL_KEY,
    "app": "JUPYTER_APP",
    "oauth": "NGROK_OAUTH",
    "allow_emails": "NGROK_OAUTH_ALLOW_EMAILS",
}
# Where the files are, not how the session runs: never recorded, never a change.
LOCATION_KEYS = ("REMOTE_AGENT_HOME", "REMOTE_AGENT_ENV_FILE")
# Checked against Jupyter's stored hash, never recorded (see password.py).
UNRECORDED_KEYS = (*LOCATION_KEYS, "JUPYTER_PASSWORD")


def provider_of(values: Mapping[str, str]) -> Provider:
    """ngrok when a token is known, unless the user asked for SSH."""
    asked = values.get(TUNNEL_KEY)
    if asked in ("ngrok", "ssh"):
        return "ngrok" if asked == "ngrok" else "ssh"
    return "ngrok" if values.get("NGROK_AUTHTOKEN") else "ssh"


def _given_now(
    flags: Mapping[str, object | None], environ: Mapping[str, str], cwd: Path
) -> tuple[dict[str, str], set[str]]:
    """Settings given on purpose by this command: its flags and the variables present in its environment.

    Returns them as .env-style text by key, and the keys that came from flags.
    """
    given = {k: environ[k] for k in KEYS if environ.get(k) and k not in LOCATION_KEYS}
    from_flags: set[str] = set()
    for flag, key in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is None or value == []:
            continue
        if isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        elif key == "JUPYTER_ROOT_DIR":
            text = str(cwd / Path(str(value)).expanduser())  # recorded absolute: later serves run elsewhere
        else:
            text = str(value)
        given[key] = text
        from_flags.add(key)
    return given, from_flags


def _home_of(environ: Mapping[str, str], file_values: Mapping[str, str]) -> Path:
    raw = environ.get("REMOTE_AGENT_HOME") or file_values.get("REMOTE_AGENT_HOME")
    return Path(raw).expanduser() if raw else default_home(environ)


def _session_layers(
    flags: Mapping[str, object | None], environ: Mapping[str, str], cwd: Path
) -> tuple[Path, Path | None, bool, dict[str, str], SessionRecord | None, Path | None]:
    """Which .env counts and what it says, and the session that runs at this home, if any.

    (home, .env path, named explicitly?, its values, the session record, a .env here that is not read)
    """
    named = flags.get("env_file") or environ.get("REMOTE_AGENT_ENV_FILE")
    if named:
        path = cwd / Path(str(named)).expanduser()
        values = read_env_file(path, explicit=True)
        home = _home_of(environ, values)
        return home, path, True, values, Home(home).read_session(SECRET_ENV_KEYS), None
    here = cwd / ".env"
    here_values = read_env_file(here, explicit=False)
    home = _home_of(environ, here_values)
    record = Home(home).read_session(SECRET_ENV_KEYS)
    if record is None:
        return home, here, False, here_values, None, None
    # A session runs: its own .env counts, wherever this command runs from.
    unread = here if here.is_file() and (record.env_file is None or here.resolve() != Path(record.env_file)) else None
    if record.env_file is None:
        return home, None, False, {}, record, unread
    session_env = Path(record.env_file)
    if session_env.is_file():
        return home, session_env, False, read_env_file(session_env, explicit=False), record, unread
    # Not there (never made yet, or moved, deleted): keep what was applied rather than fall back
    # to weaker defaults.
    return home, None, False, dict(record.applied), record, unread


def resolve(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    cwd: Path | None = None,
) -> Settings:
    """Merge flags, the process environment, the .env file, the running session and defaults into Settings.

    `flags` holds command-line values by setting name (port, root_dir, tunnel, domain, app,
    oauth, allow_emails, env_file); None means "not given". While a session runs (until
    `stop`), its .env is the one read and what was given on purpose at its earlier serves
    still holds: a variable merely absent from this shell changes nothing.
    """
    cwd = cwd or Path.cwd()
    home, env_path, explicit, file_values, record, unread = _session_layers(flags, environ, cwd)
    given, from_flags = _given_now(flags, environ, cwd)
    earlier = dict(record.given) if record else {}
    values: dict[str, str] = {k: v for k, v in file_values.items() if v and k not in LOCATION_KEYS}
    values.update(earlier)
    values.update(given)
    if "JUPYTER_ROOT_DIR" not in values and record and record.applied.get("JUPYTER_ROOT_DIR"):
        values["JUPYTER_ROOT_DIR"] = record.applied["JUPYTER_ROOT_DIR"]

    def pick(key: str) -> str | None:
        return values.get(key) or None

    def source(key: str, flag: str) -> str:
        return flag if key in from_flags else key

    raw_port = pick("JUPYTER_PORT")
    port = _parse_port(raw_port, source("JUPYTER_PORT", "--port")) if raw_port is not None else DEFAULT_PORT

    root_raw = pick("JUPYTER_ROOT_DIR")
    root_dir = None
    if root_raw is not None:
        root_dir = Path(root_raw).expanduser()
        if not root_dir.is_absolute():
            root_dir = (env_path.parent if env_path and "JUPYTER_ROOT_DIR" in file_values else cwd) / root_dir
        if not root_dir.is_dir():
            raise BadInput(
                f"{source('JUPYTER_ROOT_DIR', '--root-dir')} {root_dir} is not a directory.",
                "Create it, or point to another one.",
            )

    domain_raw = pick("NGROK_DOMAIN")
    tunnel_raw = pick(TUNNEL_KEY)
    requested: Provider | None = None
    if tunnel_raw is not None:
        if tunnel_raw not in ("ngrok", "ssh"):
            raise BadInput(f"--tunnel must be ngrok or ssh, not {tunnel_raw!r}.")
        requested = "ngrok" if tunnel_raw == "ngrok" else "ssh"

    token = pick("NGROK_AUTHTOKEN")
    if requested == "ngrok" and not token:
        raise BadInput(
            "--tunnel ngrok needs an ngrok authtoken, and none is set.",
            "Put NGROK_AUTHTOKEN=... in .env (https://dashboard.ngrok.com/get-started/your-authtoken), "
            "or use --tunnel ssh.",
        )

    app_raw = pick("JUPYTER_APP")
    hook_raw = pick("REMOTE_AGENT_ON_URL_CHANGE")
    webhook_raw = pick("REMOTE_AGENT_WEBHOOK")
    oauth = pick("NGROK_OAUTH")
    emails = _parse_emails(pick("NGROK_OAUTH_ALLOW_EMAILS") or "")
    if emails and not oauth:
        raise BadInput(
            "An e-mail allow-list needs OAuth at the edge.",
            "Add --oauth google (or set NGROK_OAUTH), or drop --allow-email.",
        )
    rate_raw = pick("NGROK_LOGIN_RATE_LIMIT")

    basic_raw = pick("NGROK_BASIC_AUTH")
    laptop_raw = pick("REMOTE_AGENT_LAPTOP_PORT")
    env_file = env_path if env_path is not None and env_path.is_file() else None
    password_in_environ = bool(environ.get("JUPYTER_PASSWORD"))
    return Settings(
        port=port,
        root_dir=root_dir,
        domain=_parse_domain(domain_raw) if domain_raw else None,
        session=_parse_session(pick("REMOTE_AGENT_SESSION") or DEFAULT_SESSION),
        home=home,
        ngrok_path=pick("PYNGROK_NGROK_PATH"),
        requested_provider=requested,
        ssh_host=pick("REMOTE_AGENT_SSH_HOST"),
        ssh_key=pick("REMOTE_AGENT_SSH_KEY"),
        laptop_port=_parse_port(laptop_raw, "REMOTE_AGENT_LAPTOP_PORT") if laptop_raw else LAPTOP_PORT,
        env_file=env_file,
        env_file_exposed=env_file is not None and _is_exposed(env_file),
        env_file_named=explicit,
        unread_env_file=unread,
        ngrok_authtoken=token,
        jupyter_password=pick("JUPYTER_PASSWORD")
        if password_in_environ
        else file_values.get("JUPYTER_PASSWORD") or None,
        password_from_file=not password_in_environ and bool(file_values.get("JUPYTER_PASSWORD")),
        basic_auth=_parse_basic_auth(basic_raw) if basic_raw else None,
        oauth_provider=oauth,
        allow_emails=emails,
        login_rate=_parse_login_rate(rate_raw) if rate_raw is not None else 0,
        app=_parse_app(app_raw, source("JUPYTER_APP", "--app")) if app_raw else None,
        on_url_change=_parse_hook_command(hook_raw) if hook_raw else None,
        webhook=_parse_webhook(webhook_raw) if webhook_raw else None,
        kernels=_parse_kernels(kernels_raw) if (kernels_raw := pick("REMOTE_AGENT_KERNELS")) else "auto",
        collaboration=_parse_collaboration(raw) if (raw := pick("REMOTE_AGENT_COLLABORATION")) else True,
        values={k: v for k, v in values.items() if k not in UNRECORDED_KEYS},
        given={k: v for k, v in {**earlier, **given}.items() if k not in UNRECORDED_KEYS},
        session_record=record,
    )


def remove_secrets_from_environ() -> None:
    """Drop secret variables from this process, so no child inherits them.

    Called once settings are resolved: tmux starts its server with our environment,
    and everything it runs (Jupyter, kernels, the keeper, the agent) would see them.
    """
    for key in SECRET_ENV_KEYS:
        os.environ.pop(key, None)
