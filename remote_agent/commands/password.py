"""`password`: set or change the Jupyter password; only a salted hash is stored."""

from __future__ import annotations

import getpass
import hashlib
import sys
import threading
from collections.abc import Callable

from remote_agent.config.settings import Settings
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput
from remote_agent.core.home import Home
from remote_agent.core.store import read_json, write_json
from remote_agent.jupyter import record as jupyter_record
from remote_agent.jupyter import server_config as jupyter_config
from remote_agent.jupyter.process import has_identity_provider


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
    from remote_agent.supervision.ownership import running_jupyter

    home = Home(settings.home)
    pid = running_jupyter(home, jupyter_record.read(home))
    if pid is not None and has_identity_provider(pid):
        console.line(
            f"The running Jupyter (pid {pid}) takes it at once, without a restart: browsers logged in with the "
            "old password log in again; kernels and share links are untouched."
        )
    elif pid is not None:
        console.line(
            "Jupyter is running with the previous password (it was started by an earlier remote-agent); "
            "the new one applies after `remote-agent stop` and `serve`."
        )
    return 0


def unlock_logins(settings: Settings, console: Console) -> int:
    """`password --unlock`: the running Jupyter forgets every failed login, at its next login attempt."""
    from remote_agent.jupyter.throttle import request_unlock
    from remote_agent.supervision.ownership import running_jupyter

    home = Home(settings.home).ensure()
    request_unlock(home.root)
    pid = running_jupyter(home, jupyter_record.read(home))
    if pid is not None and has_identity_provider(pid):
        console.line(f"The login brake is cleared: the running Jupyter (pid {pid}) forgets every failed login now.")
    elif pid is not None:
        console.line("Jupyter was started by an earlier remote-agent and has no login brake to clear.")
    else:
        console.line("Jupyter is not running; its next start begins with no failed logins anyway.")
    return 0


# -- serve's part: the password Jupyter starts with ------------------------------


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


def prepare_password(settings: Settings, console: Console, home: Home) -> Callable[[], bool]:
    """Make sure Jupyter's config will hold a password hash; prompt on a terminal if none is known.

    What can fail on bad input, or needs the user, happens now, before serve takes its lock.
    Checking a given password against the stored hash (argon2 takes a tenth of a second) and
    storing a new one run on a thread while tmux and the keeper start; the returned function
    waits for them and says whether a new hash was stored.
    """
    directory = jupyter_config.config_dir()
    current = jupyter_config.existing_hash(directory)
    password = settings.jupyter_password
    if password is None and current:
        jupyter_config.store_hash(directory, current)  # a Notebook 6 hash moves to where Notebook 7 reads
        return lambda: False
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
        return lambda: False
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

    def finish() -> bool:
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
        return outcome.get("stored") is True

    return finish
