"""The session's records under REMOTE_AGENT_HOME, and the one place that reads and writes them.

Files are JSON, 0600, in a 0700 directory. Writers replace whole files (temp file +
rename), so a reader never sees half a file and a crash or a full disk never leaves one
behind. Each record is a typed class with a `version`; `load` validates field types and
migrates what an earlier remote-agent wrote, and treats anything else as missing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from remote_agent.core.errors import BadInput, ExitCode, RemoteAgentError
from remote_agent.core.times import now_iso


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


# -- typed records ----------------------------------------------------------------

TunnelStatus = Literal["starting", "up", "down", "reconnecting", "blocked", "fatal", "stopped", "crashed"]
Provider = Literal["ngrok", "ssh"]
_LITERALS: dict[str, tuple[object, ...]] = {
    "TunnelStatus": get_args(TunnelStatus),
    "Provider": get_args(Provider),
}


def _dict_fits(annotation: str, value: dict[Any, Any]) -> bool:
    """dict[str, int] or dict[str, str]: every key a string, every value of the named type."""
    inner = annotation.partition(",")[2].rstrip("]").strip()
    return all(isinstance(k, str) and _fits(inner, v) for k, v in value.items()) if inner else True


def _fits(annotation: str, value: object) -> bool:
    """Does `value`, read from JSON, have the type a record field is annotated with?"""
    for option in (part.strip() for part in annotation.split("|")):
        base = option.split("[", 1)[0]
        if (
            (option == "None" and value is None)
            or (base == "str" and isinstance(value, str))
            or (base == "int" and isinstance(value, int) and not isinstance(value, bool))
            or (base == "bool" and isinstance(value, bool))
            or (base == "dict" and isinstance(value, dict) and _dict_fits(option, value))
            or (base in ("tuple", "list") and isinstance(value, (list, tuple)))
            or (value in _LITERALS.get(base, ()))
        ):
            return True
    return False


def _typed_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields of `data` that `cls` knows and whose type fits; None if a required one does not.

    A field of the wrong type is dropped (its default is used): a damaged record must not
    crash the keeper or serve, and whoever writes it next writes it whole again.
    """
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        if _fits(str(f.type), data[f.name]):
            values[f.name] = data[f.name]
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    return values if required <= values.keys() else None


TUNNEL_VERSION = 1


@dataclass
class TunnelState:
    """What the keeper last knew about the tunnel; written by the keeper, and by stop when it ends one."""

    provider: Provider = "ngrok"
    status: TunnelStatus = "starting"
    public_url: str | None = None
    since: str | None = None
    reopened: int = 0
    last_error: str | None = None
    keeper_pid: int | None = None
    agent_pid: int | None = None
    port: int | None = None
    updated_at: str | None = None
    api_url: str | None = None  # the agent's local API, where status asks for region and latency
    last_url: str | None = None  # the latest public URL, kept while the tunnel is down or stopped
    url_changes: int = 0  # reopens that gave a different public URL
    reopen_reasons: dict[str, int] = field(default_factory=dict)  # why it was reopened, how often
    keeper_build: str | None = None  # the code the keeper runs (see code_build); an upgrade restarts it
    # ngrok's edge refuses visitors while the agent is fine (edge_watch.py): {"code", "message", "at"}
    edge_refused: dict[str, str] | None = None
    version: int = TUNNEL_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TunnelState | None:
        if not data or data.get("version") != TUNNEL_VERSION:
            return None
        values = _typed_fields(cls, data)
        return cls(**values) if values is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


JUPYTER_VERSION = 2


@dataclass
class JupyterRecord:
    """What serve wrote when it started Jupyter. Version 1 (no version field) lacked proc_start and launch."""

    pid: int | None
    port: int | None
    root_dir: str | None = None
    provider: Provider = "ngrok"
    started_at: str | None = None
    app: str = "notebook"  # notebook | lab
    proc_start: int | None = None  # the process's start time in /proc: a reused pid is not ours
    launch: str | None = None  # a digest of how it was started: a change needs a restart to apply
    collaboration: bool | None = None  # started with the notebook on the server; None: before that existed
    version: int = JUPYTER_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JupyterRecord | None:
        if not data or data.get("version", 1) not in (1, JUPYTER_VERSION):
            return None
        values = _typed_fields(cls, {"pid": None, "port": None, **data})
        if values is None:
            return None
        values["version"] = JUPYTER_VERSION  # read as current; written back whole when next saved
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SESSION_VERSION = 1


@dataclass
class SessionRecord:
    """The settings a session was started with; they hold until `stop`, whatever runs now.

    `given` holds what the user set on purpose (flags, variables present in the environment)
    at any serve of the session; `applied`, every setting's value as last applied. Both map
    setting keys (.env names) to their text. Secret values are kept apart, in a second 0600
    file, so that this one can be shown and compared freely.
    """

    env_file: str | None = None  # the session's .env
    given: dict[str, str] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    version: int = SESSION_VERSION


def process_start(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, which a reused pid does not share."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields_[19])
    except (OSError, IndexError, ValueError):
        return None


def is_ours(pid: int | None, home: Home, marker: str | tuple[str, ...], proc_start: int | None = None) -> bool:
    """The one test of "this process is ours": alive, not a reused pid, our program, our home.

    `marker` is a word of its command line (e.g. "remote_agent.tunnel.keeper"), or the words one
    program had under each of its names; the process must have been started with this
    REMOTE_AGENT_HOME, so two homes never touch each other's.
    """
    from remote_agent.core import procs

    if not pid or not procs.is_alive(pid):
        return False
    if proc_start is not None and process_start(pid) != proc_start:
        return False
    argv = procs.cmdline(pid)
    markers = (marker,) if isinstance(marker, str) else marker
    if not any(word in part for part in argv for word in markers):
        return False
    env = procs.environ(pid)
    return env.get("REMOTE_AGENT_HOME") == str(home.root)


def code_build() -> str:
    """A short digest of remote-agent's own source files, to notice an upgrade under a running session."""
    import hashlib

    package = Path(__file__).resolve().parents[1]  # remote_agent/, every part of it
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        with contextlib.suppress(OSError):
            st = path.stat()
            digest.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


class Home:
    """REMOTE_AGENT_HOME: the paths of its files, and reading and writing its records."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> Home:
        ensure_private_dir(self.root)
        return self

    # Every file under REMOTE_AGENT_HOME, each beside the one module that writes it.

    @property
    def tunnel_state(self) -> Path:
        """Written by the tunnel part only: tunnel/keeper.py, and tunnel/launch.py's stop_keeper."""
        return self.root / "tunnel.json"

    @property
    def jupyter_record(self) -> Path:
        """Written by jupyter/process.py (a start, an adoption, a restart the supervisor reports)."""
        return self.root / "jupyter.json"

    @property
    def session_record(self) -> Path:
        """Written by commands/serve.py (the settings applied), ended by commands/stop.py."""
        return self.root / "session.json"

    @property
    def session_secrets(self) -> Path:
        """The session's secret settings (0600), written with session.json."""
        return self.root / "session-secrets.json"

    @property
    def keeper_config(self) -> Path:
        """Written by tunnel/keeper_config.py; read by the keeper."""
        return self.root / "keeper.json"

    @property
    def ngrok_config(self) -> Path:
        """The agent's own config file (the authtoken, 0600), written by tunnel/agent.py."""
        return self.root / "ngrok.yml"

    @property
    def supervision(self) -> Path:
        """Written by supervision/supervisor.py: the supervised windows, their restarts, Jupyter's launch."""
        return self.root / "supervision.json"

    @property
    def pane_death_hook(self) -> Path:
        """The script tmux runs when a supervised pane dies, written by supervision/supervisor.py."""
        return self.root / "on-pane-death"

    @property
    def kernels(self) -> Path:
        """The kernels the session offers, written by jupyter/kernelspecs.py (KernelRecord)."""
        return self.root / "kernels.json"

    @property
    def kernels_lock(self) -> Path:
        return self.root / "kernels.lock"

    @property
    def kernel_probes(self) -> Path:
        """What each of the user's interpreters answered, written by jupyter/python_envs.py (ProbeCache)."""
        return self.root / "kernel-probes.json"

    @property
    def kernelspecs(self) -> Path:
        """The folder on Jupyter's JUPYTER_PATH, written by jupyter/kernelspecs.py."""
        return self.root / "jupyter"

    @property
    def shares(self) -> Path:
        """Share links (their secrets hashed), written by jupyter/share_links.py."""
        return self.root / "shares.json"

    @property
    def login_unlock(self) -> Path:
        """`password --unlock`'s word to a running Jupyter, written by jupyter/throttle.py."""
        return self.root / "login-unlock"

    @property
    def edge_secret(self) -> Path:
        """The tunnel's proof header (0600), written by core/edge_secret.py for the keeper."""
        return self.root / "edge-secret"

    @property
    def collaboration(self) -> Path:
        """Collaboration's sessions, document history and file ids (0700), made by jupyter/collaboration.py."""
        return self.root / "collaboration"

    @property
    def remembered(self) -> Path:
        """Written by the first release (the notebook directory); read once to migrate a session."""
        return self.root / "remembered.json"

    @property
    def hints(self) -> Path:
        """Tips already given once (e.g. NGROK_DOMAIN after the URL changed), written by commands/follow.py."""
        return self.root / "hints.json"

    @property
    def password_checked(self) -> Path:
        """Which .env password was last checked against the stored hash, written by commands/password.py."""
        return self.root / "password-checked.json"

    @property
    def lock(self) -> Path:
        """Held by serve, stop and the supervisor while they change the session."""
        return self.root / "serve.lock"

    @property
    def jupyter_log(self) -> Path:
        """Jupyter's output; remote-agent adds its start and restart lines."""
        return self.root / "jupyter.log"

    @property
    def keeper_log(self) -> Path:
        return self.root / "keeper.log"

    # -- the tunnel
    def read_tunnel(self) -> TunnelState | None:
        return TunnelState.from_dict(read_json(self.tunnel_state))

    def write_tunnel(self, state: TunnelState) -> None:
        state.updated_at = now_iso()
        write_json(self.tunnel_state, state.to_dict())

    # -- Jupyter
    def read_jupyter(self) -> JupyterRecord | None:
        return JupyterRecord.from_dict(read_json(self.jupyter_record))

    def write_jupyter(self, record: JupyterRecord) -> None:
        write_json(self.jupyter_record, record.to_dict())

    def forget_jupyter(self) -> None:
        """Jupyter was stopped on purpose: the next serve must not report lost kernels."""
        self.jupyter_record.unlink(missing_ok=True)

    # -- the session
    def read_session(self, secret_keys: tuple[str, ...]) -> SessionRecord | None:
        data = read_json(self.session_record)
        if not data or data.get("version") != SESSION_VERSION:
            return self._migrated_session()
        values = _typed_fields(SessionRecord, data)
        if values is None:
            return None
        record = SessionRecord(**values)
        record.given = {k: v for k, v in record.given.items() if isinstance(v, str) and k not in secret_keys}
        record.applied = {k: v for k, v in record.applied.items() if isinstance(v, str) and k not in secret_keys}
        secrets = read_json(self.session_secrets) or {}
        for name in ("given", "applied"):
            part = secrets.get(name)
            if isinstance(part, dict):
                kept = {k: v for k, v in part.items() if k in secret_keys and isinstance(v, str)}
                getattr(record, name).update(kept)
        return record

    def _migrated_session(self) -> SessionRecord | None:
        """remote-agent 0.1 kept no session record: rebuild what it knew (the notebook directory)."""
        old = read_json(self.remembered)
        root = old.get("root_dir") if old else None
        if not isinstance(root, str):
            return None
        return SessionRecord(applied={"JUPYTER_ROOT_DIR": root}, started_at=None)

    def write_session(self, record: SessionRecord, secret_keys: tuple[str, ...]) -> None:
        def split(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
            plain = {k: v for k, v in values.items() if k not in secret_keys}
            return plain, {k: v for k, v in values.items() if k in secret_keys}

        given, given_secret = split(record.given)
        applied, applied_secret = split(record.applied)
        write_json(self.session_secrets, {"version": SESSION_VERSION, "given": given_secret, "applied": applied_secret})
        data = asdict(record)
        data.update(given=given, applied=applied)
        write_json(self.session_record, data)
        self.remembered.unlink(missing_ok=True)  # migrated

    def end_session(self) -> None:
        for path in (self.session_record, self.session_secrets, self.remembered):
            path.unlink(missing_ok=True)


def tail(path: Path, lines: int, after: str | None = None) -> list[str]:
    """The last `lines` lines of a log, only from after the last `after` marker when given."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    if after and after in text:
        text = text.rsplit(after, 1)[1]
    return text.splitlines()[-lines:] if lines > 0 else []
