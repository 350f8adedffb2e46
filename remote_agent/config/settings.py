"""Resolving settings in one place: flag > process environment > .env file > default.

Which settings there are, their flags, defaults and parsers are rows of keys.TABLE; this
module finds the layers (which .env, which running session) and resolves the table row by row.
The .env file is read with python-dotenv into a dict, never into os.environ, so its
secrets do not leak into tmux, Jupyter or kernels.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from remote_agent.config import parsers, session_record
from remote_agent.config.keys import DEFAULT_PORT, DEFAULT_SESSION, TABLE, TUNNEL_KEY, UNRECORDED_KEYS, Key
from remote_agent.config.parsers import App, Source
from remote_agent.config.session_record import SessionRecord
from remote_agent.core.errors import BadInput
from remote_agent.core.home import Home
from remote_agent.core.records import Provider
from remote_agent.core.redaction import SECRET_ENV_KEYS
from remote_agent.core.ssh_hint import LAPTOP_PORT

# Where the files are, not how the session runs: read first, never recorded, never a change.
LOCATIONS = tuple(key.name for key in TABLE if key.location)


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


def env_files_read(settings: Settings, cwd: Path) -> list[Path]:
    """The .env files resolving these settings read or looked for: a change in one may change them."""
    paths = [cwd / ".env"]
    if settings.env_file is not None:
        paths.append(settings.env_file)
    if settings.session_record is not None and settings.session_record.env_file:
        paths.append(Path(settings.session_record.env_file))
    return paths


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
    given = {k.name: environ[k.name] for k in TABLE if k.variable and not k.location and environ.get(k.name)}
    from_flags: set[str] = set()
    for key in TABLE:
        value = flags.get(key.dest) if key.dest and not key.location else None
        if value is None or value == []:
            continue
        if isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        elif key.parse is parsers.directory:
            text = str(cwd / Path(str(value)).expanduser())  # recorded absolute: later serves run elsewhere
        else:
            text = str(value)
        given[key.name] = text
        from_flags.add(key.name)
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
        return home, path, True, values, session_record.read(Home(home), SECRET_ENV_KEYS), None
    here = cwd / ".env"
    here_values = read_env_file(here, explicit=False)
    home = _home_of(environ, here_values)
    record = session_record.read(Home(home), SECRET_ENV_KEYS)
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


def _value(key: Key, values: Mapping[str, str], from_flags: set[str], base: Path) -> Any:
    """One setting's value: its text parsed, or its default when nothing gives it."""
    raw = values.get(key.name) or None
    if raw is None:
        return key.default
    return key.parse(raw, Source(key.flag if key.name in from_flags and key.flag else key.name, base))


def _check_together(settings: Settings) -> None:
    """What is wrong only in combination."""
    if settings.requested_provider == "ngrok" and not settings.ngrok_authtoken:
        raise BadInput(
            "--tunnel ngrok needs an ngrok authtoken, and none is set.",
            "Put NGROK_AUTHTOKEN=... in .env (https://dashboard.ngrok.com/get-started/your-authtoken), "
            "or use --tunnel ssh.",
        )
    if settings.allow_emails and not settings.oauth_provider:
        raise BadInput(
            "An e-mail allow-list needs OAuth at the edge.",
            "Add --oauth google (or set NGROK_OAUTH), or drop --allow-email.",
        )


def resolve(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    cwd: Path | None = None,
) -> Settings:
    """Merge flags, the process environment, the .env file, the running session and defaults into Settings.

    `flags` holds command-line values by each flag's name in keys.TABLE (port, root_dir, tunnel,
    domain, app, oauth, allow_emails, env_file); None means "not given". While a session runs
    (until `stop`), its .env is the one read and what was given on purpose at its earlier serves
    still holds: a variable merely absent from this shell changes nothing.
    """
    cwd = cwd or Path.cwd()
    home, env_path, explicit, file_values, record, unread = _session_layers(flags, environ, cwd)
    given, from_flags = _given_now(flags, environ, cwd)
    earlier = dict(record.given) if record else {}
    values: dict[str, str] = {k: v for k, v in file_values.items() if v and k not in LOCATIONS}
    values.update(earlier)
    values.update(given)
    for key in TABLE:
        if key.kept_while_running and key.name not in values and record and record.applied.get(key.name):
            values[key.name] = record.applied[key.name]

    # A relative path in the .env is taken from the .env's directory.
    env_dir = env_path.parent if env_path else cwd
    parsed = {
        key.attr: _value(key, values, from_flags, env_dir if key.name in file_values else cwd)
        for key in TABLE
        if not key.location
    }
    env_file = env_path if env_path is not None and env_path.is_file() else None
    settings = Settings(
        **parsed,
        home=home,
        env_file=env_file,
        env_file_exposed=env_file is not None and _is_exposed(env_file),
        env_file_named=explicit,
        unread_env_file=unread,
        password_from_file=not environ.get("JUPYTER_PASSWORD") and bool(file_values.get("JUPYTER_PASSWORD")),
        values={k: v for k, v in values.items() if k not in UNRECORDED_KEYS},
        given={k: v for k, v in {**earlier, **given}.items() if k not in UNRECORDED_KEYS},
        session_record=record,
    )
    _check_together(settings)
    return settings


def remove_secrets_from_environ() -> None:
    """Drop secret variables from this process, so no child inherits them.

    Called once settings are resolved: tmux starts its server with our environment,
    and everything it runs (Jupyter, kernels, the keeper, the agent) would see them.
    """
    for key in SECRET_ENV_KEYS:
        os.environ.pop(key, None)
