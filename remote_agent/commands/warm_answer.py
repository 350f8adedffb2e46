"""`serve --detach` and `status` answered from a record: what the last one said, and every fact it rested on.

A user runs `serve` after each reconnect, and scripts run `status` often. When nothing changed
since the last time (the same command from the same directory, the same environment, no file
it read changed, the same processes running, Jupyter answering), the full command would say
the same again: loading it costs several times what checking those facts does. So the full
command records its answer with the facts, and `commands/quick.py` checks them with os, json
and /proc alone and gives the answer, or runs the full command when any fact differs.

- `serve`: the lines a warm serve prints, recorded by a serve that said nothing else (no
  note, no warning, no kernel added).
- `status`: its table's rows and its JSON object, recorded when it found nothing wrong;
  what changes by the moment (times since, kernels, running cells, latency) is filled in
  when shown, by commands/status_live.py, as the full command does.

The facts are written by the full command, which knows what it read: the home's records, the
.env files, Jupyter's config, the places kernel discovery looked, remote-agent's own code.
The reader knows none of that; it only compares file stats, process start times and one
request to Jupyter. A secret given in the environment is checked by the full serve every time
(a password only has a slow hash on record), so such a serve is never answered here; no
secret's value is hashed into a record. REMOTE_AGENT_HOME/warm-COMMAND.json (0600) are
written here and nowhere else.
"""

from __future__ import annotations

import json
import os
import zlib

from remote_agent.core import procs

TYPE_CHECKING = False  # typing is not loaded on the quick path
if TYPE_CHECKING:
    from typing import Any

    from remote_agent.config.settings import Settings

VERSION = 1
# The command lines answered from a record, by the command whose record answers them.
ANSWERED = {"serve": (["serve", "--detach"],), "status": (["status"], ["status", "--json"])}
# Set anew by each SSH login, and read by no command (of SSH_CONNECTION, only the server's
# address and port are: the ssh command serve prints names them).
PER_LOGIN = frozenset(
    {"SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "OLDPWD", "PWD", "_", "SHLVL"}
)
# Files in the home that change while nothing a command reads does: logs and lock files, the
# collaboration databases (Jupyter's), and these records.
UNREAD_SUFFIXES = (".log", ".lock")
UNREAD_NAMES = frozenset({"collaboration"})
PREFIX = "warm-"


class Invocation:
    """A command as it was typed: its words, where, and the environment it had (secrets still in it)."""

    def __init__(self, argv: list[str], cwd: str, environ: dict[str, str]) -> None:
        self.argv = argv
        self.cwd = cwd
        self.environ = environ


def file_name(command: str) -> str:
    return f"{PREFIX}{command}.json"


def command_of(argv: list[str]) -> str | None:
    """The command whose record may answer this command line, if any."""
    return next((command for command, lines in ANSWERED.items() if argv in lines), None)


def signature(path: str) -> list[int] | None:
    """What changes when a file or directory is written, replaced, chmod-ed or removed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid]


def subfolders(path: str) -> list[str] | None:
    """The names of a folder's subfolders (a file saved in it changes its time, not these)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir())
    except OSError:
        return None


def environment_digest(environ: dict[str, str], secret_names: list[str]) -> str:
    """One hash of the environment a command ran with, but for what each SSH login sets anew and the secrets."""
    skip = PER_LOGIN.union(secret_names)
    kept = sorted((k, v) for k, v in environ.items() if k not in skip)
    server = environ.get("SSH_CONNECTION", "").split()[2:4]
    text = json.dumps([kept, server, sorted(k for k in secret_names if k in environ)], separators=(",", ":"))
    data = text.encode("utf-8", "surrogateescape")
    # A checksum to notice a change, not a hash to protect a value (the secrets are left out
    # above): zlib loads in a fraction of hashlib's time, and two checksums make 64 bits.
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def home_files(home: str) -> list[str]:
    """The files and folders in the home a command may read (direct children only)."""
    try:
        names = os.listdir(home)
    except OSError:
        return []
    return sorted(
        os.path.join(home, n)
        for n in names
        if n not in UNREAD_NAMES and not n.endswith(UNREAD_SUFFIXES) and not n.startswith(PREFIX)
    )


def jupyter_answers(port: int) -> bool:
    """As jupyter/process.answers: Jupyter's /api (no login needed) says its version."""
    from remote_agent.core import loopback

    answer = loopback.get(port, "/api", 1.0, limit=4096)
    return answer is not None and answer[0] == 200 and b'"version"' in answer[1]


def files_read(settings: Settings) -> set[str]:
    """What every command reads besides the home: the .env files, remote-agent's own code, its Python."""
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parents[1]
    paths = {str(Path.cwd() / ".env"), sys.executable, str(package)}
    # A new version adds, replaces or rewrites files in these (byte-compiling changes nothing).
    paths.update(str(p) for p in package.iterdir() if p.is_dir() and p.name != "__pycache__")
    paths.update(str(p) for p in package.rglob("*.py"))
    if settings.env_file is not None:
        paths.add(str(settings.env_file))
    if settings.session_record is not None and settings.session_record.env_file:
        paths.add(settings.session_record.env_file)
    return paths


def replayable(command: str, invocation: Invocation, secret_names: tuple[str, ...]) -> bool:
    """Whether this command line may be answered from a record at all."""
    if invocation.argv not in ANSWERED[command]:
        return False
    return command != "serve" or not any(name in invocation.environ for name in secret_names)


def record(
    home: str,
    command: str,
    invocation: Invocation,
    secret_names: tuple[str, ...],
    kept: dict[str, Any],
    paths: set[str],
    listed: set[str],
    pids: list[int],
    port: int,
) -> bool:
    """Keep an answer for the next time; False (and no record) when it may not be given from one."""
    from pathlib import Path

    from remote_agent.core.store import write_json  # the writer's side: the full command has these loaded

    starts = {str(pid): procs.start_time(pid) for pid in pids}
    if not replayable(command, invocation, secret_names) or None in starts.values():
        forget(home, command)
        return False
    watched = sorted(set(home_files(home)) | paths)
    write_json(
        Path(home) / file_name(command),
        {
            "version": VERSION,
            "cwd": invocation.cwd,
            "environment": environment_digest(invocation.environ, list(secret_names)),
            "secret_names": list(secret_names),
            "files": {p: signature(p) for p in watched},
            "home_files": home_files(home),
            "subfolders": {p: subfolders(p) for p in sorted(listed)},
            "processes": starts,
            "port": port,
            "answer": kept,
        },
    )
    return True


def forget(home: str, command: str) -> None:
    """No answer on record: the next one runs in full."""
    try:  # noqa: SIM105 (contextlib is not loaded by the quick answers)
        os.unlink(os.path.join(home, file_name(command)))
    except FileNotFoundError:
        pass


def _holds(kept: dict[str, Any], home: str, cwd: str, environ: dict[str, str]) -> bool:
    """Every fact of the record, cheapest first."""
    if kept.get("version") != VERSION or kept.get("cwd") != cwd:
        return False
    secret_names, files, folders = kept.get("secret_names"), kept.get("files"), kept.get("subfolders")
    processes, port = kept.get("processes"), kept.get("port")
    if not isinstance(secret_names, list) or kept.get("environment") != environment_digest(environ, secret_names):
        return False
    if home_files(home) != kept.get("home_files"):
        return False
    if not isinstance(files, dict) or any(signature(p) != sig for p, sig in files.items()):
        return False
    if not isinstance(folders, dict) or any(subfolders(p) != names for p, names in folders.items()):
        return False
    if not isinstance(processes, dict) or any(procs.start_time(int(p)) != t for p, t in processes.items()):
        return False
    return isinstance(port, int) and jupyter_answers(port)


def answer(home: str, argv: list[str], cwd: str, environ: dict[str, str]) -> dict[str, Any] | None:
    """The recorded answer to this command line when every fact still holds, else None (the full command runs)."""
    command = command_of(argv)
    if command is None:
        return None
    try:
        with open(os.path.join(home, file_name(command)), encoding="utf-8") as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or not _holds(kept, home, cwd, environ):
        return None
    if command == "serve" and any(name in environ for name in kept["secret_names"]):
        return None  # checked by the full serve every time
    found = kept.get("answer")
    return found if isinstance(found, dict) else None
