"""The one reader of /proc: is a pid alive, when it started, what runs there, its children, waiting for it to end."""

from __future__ import annotations

import os
import time

# os and time only: the quick answers (commands/quick.py) read /proc through this module before
# anything else loads, so neither pathlib nor typing is imported here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from remote_agent.core.home import Home


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def is_alive(pid: int | None) -> bool:
    """True when `pid` runs and is not a zombie."""
    if not pid or pid <= 0:
        return False
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")  # type: ignore[index]


def cmdline(pid: int) -> list[str]:
    try:
        raw = _read(f"/proc/{pid}/cmdline")
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def environ(pid: int) -> dict[str, str]:
    """A process's environment as it was started (readable for our own processes)."""
    try:
        raw = _read(f"/proc/{pid}/environ")
    except OSError:
        return {}
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {key: value for key, _, value in pairs}


def pids() -> list[int]:
    """Every process id in /proc now."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(pid: int) -> list[int]:
    """Direct children of `pid`."""
    found = []
    for child in pids():
        fields = _stat_fields(child)
        if fields and len(fields) > 1 and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(child)
    return found


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has ended; True if it did within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)


def signal_pid(pid: int, sig: int) -> None:
    try:  # noqa: SIM105 (contextlib is not loaded by the quick answers)
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if it ended politely."""
    import signal

    if not is_alive(pid):
        return True
    signal_pid(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return True
    signal_pid(pid, signal.SIGKILL)
    wait_gone(pid, 5)
    return False


def _stat_fields(pid: int, thread: int | None = None) -> list[str] | None:
    """The fields of /proc/PID/stat (or of one thread's) after the command name (fields[0] is the state letter).

    The one reader of that file: the command name is in parentheses and may hold spaces."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    try:
        return _read(path).decode(errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def on_cpu(pid: int) -> bool:
    """True when any thread of `pid` is on a CPU or waiting for one (state R)."""
    try:
        threads = [int(name) for name in os.listdir(f"/proc/{pid}/task") if name.isdigit()]
    except OSError:
        return False
    return any((_stat_fields(pid, t) or ["?"])[0] == "R" for t in threads)


def start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, which a reused pid does not share."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def started_at(pid: int) -> float | None:
    """When `pid` started, in seconds since the epoch (from /proc, so right even after a record is lost)."""
    fields = _stat_fields(pid)
    if not fields or len(fields) <= 19:
        return None
    try:
        boot = next(
            int(line.split()[1]) for line in _read("/proc/stat").decode().splitlines() if line.startswith("btime")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Children, grandchildren ... of `pid`, from one pass over /proc."""
    parents: dict[int, list[int]] = {}
    for child in pids():
        fields = _stat_fields(child)
        if fields and len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_ours(pid: int | None, home: Home, marker: str | tuple[str, ...], proc_start: int | None = None) -> bool:
    """The one test of "this process is ours": alive, not a reused pid, our program, our home.

    `marker` is a word of its command line (e.g. "remote_agent.tunnel.keeper"), or the words one
    program had under each of its names; the process must have been started with this
    REMOTE_AGENT_HOME, so two homes never touch each other's.
    """
    if not pid or not is_alive(pid):
        return False
    if proc_start is not None and start_time(pid) != proc_start:
        return False
    argv = cmdline(pid)
    markers = (marker,) if isinstance(marker, str) else marker
    if not any(word in part for part in argv for word in markers):
        return False
    return environ(pid).get("REMOTE_AGENT_HOME") == str(home.root)
