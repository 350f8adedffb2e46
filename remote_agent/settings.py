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

Provider = Literal["ngrok", "ssh"]

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
    "REMOTE_AGENT_SESSION",
    "REMOTE_AGENT_HOME",
    "PYNGROK_NGROK_PATH",
    "REMOTE_AGENT_SSH_HOST",
    "REMOTE_AGENT_SSH_KEY",
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
    env_file: Path | None = None
    env_file_exposed: bool = False
    ngrok_authtoken: str | None = field(default=None, repr=False)
    jupyter_password: str | None = field(default=None, repr=False)
    basic_auth: str | None = field(default=None, repr=False)

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


def _parse_session(raw: str) -> str:
    if not raw or any(c in raw for c in ".: "):
        raise BadInput(
            f"REMOTE_AGENT_SESSION {raw!r} is not a valid tmux session name.",
            "Use letters, digits, '-' and '_' only.",
        )
    return raw


def resolve(
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

    basic_raw = pick("NGROK_BASIC_AUTH")
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
        env_file=path if path.is_file() else None,
        env_file_exposed=path.is_file() and _is_exposed(path),
        ngrok_authtoken=token,
        jupyter_password=pick("JUPYTER_PASSWORD"),
        basic_auth=_parse_basic_auth(basic_raw) if basic_raw else None,
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
