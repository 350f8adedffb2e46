"""Checking one setting's text and turning it into its value: one parser per kind of setting.

Each parser takes the text and where it came from (the flag or variable to name in an
error, the directory a relative path is taken from) and raises BadInput when the text is
not a value the setting can have. The table in keys.py names each setting's parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from remote_agent.core.errors import BadInput

App = Literal["notebook", "lab"]

MIN_BASIC_AUTH_PASSWORD = 8  # ngrok's edge refuses shorter basic-auth passwords ...
MAX_BASIC_AUTH_PASSWORD = 128  # ... and longer ones


@dataclass(frozen=True)
class Source:
    """Where a setting's text came from."""

    name: str  # what the user set: the flag (--port) or the variable (JUPYTER_PORT)
    base: Path  # a relative path is taken from here: the .env's directory, else the working directory


def text(raw: str, source: Source) -> str:
    return raw


def port(raw: str, source: Source) -> int:
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise BadInput(
            f"{source.name} must be a port number, not {raw!r}.", "Use a number from 1024 to 65535."
        ) from None
    if not 1 <= number <= 65535:
        raise BadInput(f"{source.name} must be from 1 to 65535, not {number}.", "Use a number from 1024 to 65535.")
    return number


def directory(raw: str, source: Source) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = source.base / path
    if not path.is_dir():
        raise BadInput(f"{source.name} {path} is not a directory.", "Create it, or point to another one.")
    return path


def tunnel(raw: str, source: Source) -> Literal["ngrok", "ssh"]:
    if raw not in ("ngrok", "ssh"):
        raise BadInput(f"--tunnel must be ngrok or ssh, not {raw!r}.")
    return "ngrok" if raw == "ngrok" else "ssh"


def domain(raw: str, source: Source) -> str:
    name = raw.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not name or "/" in name or " " in name:
        raise BadInput(
            f"NGROK_DOMAIN must be a host name such as my-name.ngrok-free.app, not {raw!r}.",
            "Copy the domain from the ngrok dashboard (Domains page).",
        )
    return name


def basic_auth(raw: str, source: Source) -> str:
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


def login_rate(raw: str, source: Source) -> int:
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


def emails(raw: str, source: Source) -> tuple[str, ...]:
    found = tuple(e.strip() for e in raw.split(",") if e.strip())
    for email in found:
        if "@" not in email or " " in email or "'" in email:
            raise BadInput(f"{email!r} is not an e-mail address.", "Give addresses like ana@example.com.")
    return found


def session(raw: str, source: Source) -> str:
    if not raw or any(c in raw for c in ".: "):
        raise BadInput(
            f"REMOTE_AGENT_SESSION {raw!r} is not a valid tmux session name.",
            "Use letters, digits, '-' and '_' only.",
        )
    return raw


def app(raw: str, source: Source) -> App:
    value = raw.strip().lower()
    if value in ("notebook", "lab"):
        return "lab" if value == "lab" else "notebook"
    raise BadInput(
        f"{source.name} must be notebook or lab, not {raw!r}.", "notebook is Jupyter Notebook, lab JupyterLab."
    )


def hook_command(raw: str, source: Source) -> str:
    """Check REMOTE_AGENT_ON_URL_CHANGE's quoting; the command runs as given (see tunnel/notify.py)."""
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


def webhook(raw: str, source: Source) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            "REMOTE_AGENT_WEBHOOK must be an http:// or https:// URL.",
            "Use the URL your service gave you, e.g. https://hooks.slack.com/services/...",
        )
    return raw.strip()


def kernels(raw: str, source: Source) -> Literal["auto", "off"]:
    value = raw.strip().lower()
    if value not in ("auto", "off"):
        raise BadInput(
            f"REMOTE_AGENT_KERNELS must be auto or off, not {raw!r}.", "auto offers your Python environments."
        )
    return "off" if value == "off" else "auto"


def collaboration(raw: str, source: Source) -> bool:
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise BadInput(
            f"{source.name} must be on or off, not {raw!r}.",
            "on keeps outputs on the server and lets share links edit together; off serves plain Jupyter.",
        )
    return value == "on"
