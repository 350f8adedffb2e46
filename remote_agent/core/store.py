"""Private files under REMOTE_AGENT_HOME: 0700 directories, atomic 0600 writes, appends, JSON, locks.

Writers replace whole files (temp file + rename), so a reader never sees half a file and a
crash or a full disk never leaves one behind. Which module writes which file is in home.py.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from remote_agent.core.errors import BadInput, ExitCode, RemoteAgentError


class StateDirError(RemoteAgentError):
    """REMOTE_AGENT_HOME cannot be created or written."""

    exit_code = BadInput.exit_code


def _explain(path: Path, e: OSError) -> StateDirError:
    if e.errno == errno.ENOSPC:
        return StateDirError(
            f"The disk holding {path} is full.",
            "Free some space (df -h shows where), then run the command again.",
        )
    return StateDirError(
        f"Cannot write {path}: {e.strerror or e}.",
        "Fix its permissions, or set REMOTE_AGENT_HOME to a directory you own.",
    )


def ensure_private_dir(path: Path) -> Path:
    """Create a 0700 directory (and parents); tighten it if it is wider."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as e:
        raise _explain(path, e) from e
    return path


def _holds(path: Path, data: bytes) -> bool:
    """True when `path` is already our private regular file with exactly `data` in it."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o777 != 0o600 or st.st_uid != os.geteuid():
            return False
        if st.st_nlink != 1:
            return False  # a rewrite gives it a name of its own again
        return st.st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, mode 0600; a file that already holds it is left as it is
    (a warm serve would otherwise rewrite and fsync several unchanged records)."""
    if _holds(path, text.encode("utf-8")):
        return
    import tempfile  # not at the top: only a write needs it

    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as e:
        raise _explain(directory, e) from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _explain(path, e) from e


def append_private(path: Path, text: str) -> None:
    """Append to a 0600 log file, with the same plain error as other writes when the disk is full."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise _explain(path, e) from e


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in a JSON file; None when it is missing, unreadable or corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Busy(RemoteAgentError):
    """Another remote-agent command holds the session's lock for too long."""

    exit_code = ExitCode.START_FAILED


def _lock_holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it: 'serve (pid 123)'."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode(errors="replace").strip()
    except OSError:
        return "another remote-agent command"
    return text or "another remote-agent command"


@contextlib.contextmanager
def exclusive_lock(
    path: Path, holder: str, on_wait: Callable[[str], None] | None = None, timeout: float = 60.0
) -> Iterator[None]:
    """Hold an flock on `path` while records are read and processes started, never across long waits.

    The holder writes who it is into the file, so a waiter can say what it waits for.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise _explain(path, e) from e
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    on_wait(f"Waiting for {_lock_holder(fd)} to finish starting things ...")
                    told = True
                if time.monotonic() > deadline:
                    raise Busy(
                        f"{_lock_holder(fd)} has held remote-agent's lock ({path}) for {timeout:.0f} s.",
                        "Wait for it to finish, or find it with: ps aux | grep remote_agent",
                    ) from None
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"remote-agent {holder} (pid {os.getpid()})".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def tail(path: Path, lines: int, after: str | None = None) -> list[str]:
    """The last `lines` lines of a log, only from after the last `after` marker when given."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    if after and after in text:
        text = text.rsplit(after, 1)[1]
    return text.splitlines()[-lines:] if lines > 0 else []
