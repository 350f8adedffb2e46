"""`password`: set or change the Jupyter password; only a salted hash is stored."""

from __future__ import annotations

import getpass
import sys

from remote_agent import jupyter_config
from remote_agent.console import Console
from remote_agent.errors import BadInput
from remote_agent.jupyter_process import has_identity_provider
from remote_agent.settings import Settings
from remote_agent.tmux_session import JUPYTER_WINDOW, TmuxSession


def prompt_twice() -> str:
    first = getpass.getpass("New Jupyter password: ")
    if not first:
        raise BadInput("The password is empty.", "Run again and type a password.")
    if getpass.getpass("Type it again: ") != first:
        raise BadInput("The two passwords differ.", "Run again and type the same password twice.")
    return first


def read_from_stdin() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise BadInput(
            "No password on standard input.", "Pipe it in: printf '%s\\n' \"$PW\" | remote-agent password --stdin"
        )
    return line


def warn_if_short(password: str, console: Console) -> None:
    if len(password) < jupyter_config.SHORT_PASSWORD:
        console.warn(
            f"the password has {len(password)} characters; the URL is public, so use "
            f"{jupyter_config.SHORT_PASSWORD} or more."
        )


def set_password(settings: Settings, console: Console, from_stdin: bool) -> int:
    if from_stdin:
        password = read_from_stdin()
    elif sys.stdin.isatty():
        password = prompt_twice()
    else:
        raise BadInput("No terminal to ask for the password.", "Use --stdin, or set JUPYTER_PASSWORD in .env.")
    warn_if_short(password, console)
    path = jupyter_config.store_hash(jupyter_config.config_dir(), jupyter_config.hash_password(password))
    console.line(f"Password saved as a salted hash in {path}.")
    pid = TmuxSession(settings.session).window_pid(JUPYTER_WINDOW)
    if pid and has_identity_provider(pid):
        console.line(
            f"The running Jupyter (pid {pid}) takes it at once, without a restart: browsers logged in with the "
            "old password log in again; kernels and share links are untouched."
        )
    elif pid:
        console.line(
            "Jupyter is running with the previous password (it was started by an earlier remote-agent); "
            "the new one applies after `remote-agent stop` and `serve`."
        )
    return 0
