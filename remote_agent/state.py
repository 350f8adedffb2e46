"""Files under REMOTE_AGENT_HOME: atomic, versioned JSON, 0600 files in a 0700 directory.

Writers replace whole files (temp file + rename), so a reader never sees half a file
and a crash or a full disk never leaves one behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from remote_agent.errors import BadInput, RemoteAgentError

STATE_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, mode 0600."""
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


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold an flock on `path`, so two `serve` runs cannot start things twice."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise _explain(path, e) from e
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RemoteAgentError(
                        f"Another remote-agent command has held {path} for {timeout:.0f} s.",
                        "Wait for it to finish, or find it with: ps aux | grep remote_agent",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


@dataclass
class TunnelState:
    """What the keeper last knew about the tunnel; the keeper is its only writer."""

    provider: str = "ngrok"
    status: str = "starting"  # starting | up | down | reconnecting | blocked | fatal | crashed | stopped
    public_url: str | None = None
    since: str | None = None
    reopened: int = 0
    last_error: str | None = None
    keeper_pid: int | None = None
    agent_pid: int | None = None
    port: int | None = None
    updated_at: str | None = None
    # Optional, added later (older files lack them and read as these defaults):
    api_url: str | None = None  # the agent's local API, where status asks for region and latency
    last_url: str | None = None  # the latest public URL, kept while the tunnel is down or stopped
    url_changes: int = 0  # reopens that gave a different public URL
    reopen_reasons: dict[str, int] = field(default_factory=dict)  # why it was reopened, how often
    version: int = STATE_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TunnelState | None:
        if not data or data.get("version") != STATE_VERSION:
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and _fits(v, _TUNNEL_TYPES.get(k, object))}
        try:
            return cls(**values)
        except TypeError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What each field may hold: a field of the wrong type (an edited or damaged file) reads as its default.
_TUNNEL_TYPES: dict[str, type | tuple[type, ...]] = {
    "provider": str,
    "status": str,
    "public_url": (str, type(None)),
    "since": (str, type(None)),
    "reopened": int,
    "last_error": (str, type(None)),
    "keeper_pid": (int, type(None)),
    "agent_pid": (int, type(None)),
    "port": (int, type(None)),
    "updated_at": (str, type(None)),
    "api_url": (str, type(None)),
    "last_url": (str, type(None)),
    "url_changes": int,
    "reopen_reasons": dict,
}


def _fits(value: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind is not bool:
        return False  # JSON true is not a pid or a count
    if isinstance(value, dict):
        return kind is dict and all(isinstance(k, str) and type(v) is int for k, v in value.items())
    return isinstance(value, kind)


class Home:
    """The paths under REMOTE_AGENT_HOME, in one place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> Home:
        ensure_private_dir(self.root)
        return self

    @property
    def tunnel_state(self) -> Path:
        return self.root / "tunnel.json"

    @property
    def jupyter_record(self) -> Path:
        return self.root / "jupyter.json"

    @property
    def keeper_config(self) -> Path:
        return self.root / "keeper.json"

    @property
    def ngrok_config(self) -> Path:
        return self.root / "ngrok.yml"

    @property
    def remembered(self) -> Path:
        return self.root / "remembered.json"

    @property
    def hints(self) -> Path:
        """Tips already given once (e.g. NGROK_DOMAIN after the URL changed)."""
        return self.root / "hints.json"

    @property
    def password_checked(self) -> Path:
        return self.root / "password-checked.json"

    @property
    def lock(self) -> Path:
        return self.root / "serve.lock"

    @property
    def jupyter_log(self) -> Path:
        return self.root / "jupyter.log"

    @property
    def keeper_log(self) -> Path:
        return self.root / "keeper.log"

    def read_tunnel(self) -> TunnelState | None:
        return TunnelState.from_dict(read_json(self.tunnel_state))

    def write_tunnel(self, state: TunnelState) -> None:
        state.updated_at = now_iso()
        write_json(self.tunnel_state, state.to_dict())
