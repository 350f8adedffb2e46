"""A warm `serve --detach` answered from its record: what it printed, and every fact that answer rested on.

A user runs `serve` after each reconnect. When nothing changed since the last one (the same
command from the same directory, the same environment, no file it read changed, the same
processes running, Jupyter answering), the full command would print the same lines again
and change nothing: loading it costs several times what checking those facts does. So each
serve that ran quiet (no note, no warning, nothing added) records the lines a warm serve
prints, with the facts; `commands/quick.py` checks them with os, json and /proc alone and
prints the lines, or runs the full command when any fact differs.

The facts are written by the full command, which knows what it read: the home's records, the
.env files, Jupyter's config, the places kernel discovery looked, remote-agent's own code.
The reader knows none of that; it only compares file stats, process start times and one
request to Jupyter. A secret given in the environment is checked by the full command every
time (a password only has a slow hash on record), so such a serve is never answered here.
REMOTE_AGENT_HOME/warm-serve.json (0600) is written here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os

from remote_agent.core import procs

VERSION = 1
FILE = "warm-serve.json"
ANSWERED = (["serve", "--detach"],)  # the command lines answered from the record
# Set anew by each SSH login, and read by no part of serve (of SSH_CONNECTION, only the
# server's address and port are: the printed ssh command names them).
PER_LOGIN = frozenset(
    {"SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "OLDPWD", "PWD", "_", "SHLVL"}
)
# Files in the home that change while nothing a serve reads does: its logs and lock files, the
# collaboration databases (Jupyter's), and this record.
UNREAD_SUFFIXES = (".log", ".lock")
UNREAD_NAMES = frozenset({"collaboration", FILE})

Signature = list[int] | None


class Invocation:
    """A command as it was typed: its words, where, and the environment it had (secrets still in it)."""

    def __init__(self, argv: list[str], cwd: str, environ: dict[str, str]) -> None:
        self.argv = argv
        self.cwd = cwd
        self.environ = environ


def signature(path: str) -> Signature:
    """What changes when a file or directory is written, replaced, chmod-ed or removed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid]


def environment_digest(environ: dict[str, str]) -> str:
    """One hash of the environment a serve ran with, leaving out what each SSH login sets anew."""
    kept = sorted((k, v) for k, v in environ.items() if k not in PER_LOGIN)
    server = environ.get("SSH_CONNECTION", "").split()[2:4]
    text = json.dumps([kept, server], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def home_files(home: str) -> list[str]:
    """The files and folders in the home a serve may read (direct children only)."""
    try:
        names = os.listdir(home)
    except OSError:
        return []
    return [os.path.join(home, n) for n in names if n not in UNREAD_NAMES and not n.endswith(UNREAD_SUFFIXES)]


def subfolders(path: str) -> list[str] | None:
    """The names of a folder's subfolders (a file saved in it changes its time, not these)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir())
    except OSError:
        return None


def jupyter_answers(port: int) -> bool:
    """As jupyter/process.answers: Jupyter's /api (no login needed) says its version."""
    from remote_agent.core import loopback

    answer = loopback.get(port, "/api", 1.0, limit=4096)
    return answer is not None and answer[0] == 200 and b'"version"' in answer[1]


def replayable(invocation: Invocation, secret_names: tuple[str, ...]) -> bool:
    """Whether this command line may be answered from a record at all."""
    return invocation.argv in ANSWERED and not any(name in invocation.environ for name in secret_names)


def record(
    home: str,
    invocation: Invocation,
    secret_names: tuple[str, ...],
    text: str,
    paths: set[str],
    listed: set[str],
    pids: list[int],
    port: int,
) -> bool:
    """Keep a quiet serve's answer for the next one; False (and no record) when it may not be replayed."""
    from pathlib import Path

    from remote_agent.core.store import write_json  # the writer's side: the full command has these loaded

    path = os.path.join(home, FILE)
    starts = {str(pid): procs.start_time(pid) for pid in pids}
    if not replayable(invocation, secret_names) or None in starts.values():
        forget(home)
        return False
    watched = sorted(set(home_files(home)) | paths)
    write_json(
        Path(path),
        {
            "version": VERSION,
            "argv": invocation.argv,
            "cwd": invocation.cwd,
            "environment": environment_digest(invocation.environ),
            "secret_names": list(secret_names),
            "files": {p: signature(p) for p in watched},
            "home_files": sorted(home_files(home)),
            "subfolders": {p: subfolders(p) for p in sorted(listed)},
            "processes": starts,
            "port": port,
            "text": text,
        },
    )
    return True


def forget(home: str) -> None:
    """No answer on record: the next serve runs in full."""
    try:  # noqa: SIM105 (contextlib is not loaded by the quick answers)
        os.unlink(os.path.join(home, FILE))
    except FileNotFoundError:
        pass


def _holds(kept: dict[str, object], home: str, argv: list[str], cwd: str, environ: dict[str, str]) -> bool:
    """Every fact of the record, cheapest first."""
    if kept.get("version") != VERSION or kept.get("argv") != argv or kept.get("cwd") != cwd:
        return False
    secret_names, files, folders = kept.get("secret_names"), kept.get("files"), kept.get("subfolders")
    processes, port = kept.get("processes"), kept.get("port")
    if not isinstance(secret_names, list) or any(name in environ for name in secret_names):
        return False
    if kept.get("environment") != environment_digest(environ) or sorted(home_files(home)) != kept.get("home_files"):
        return False
    if not isinstance(files, dict) or any(signature(p) != sig for p, sig in files.items()):
        return False
    if not isinstance(folders, dict) or any(subfolders(p) != names for p, names in folders.items()):
        return False
    if not isinstance(processes, dict) or any(procs.start_time(int(p)) != t for p, t in processes.items()):
        return False
    return isinstance(port, int) and jupyter_answers(port)


def answer(home: str, argv: list[str], cwd: str, environ: dict[str, str]) -> str | None:
    """The recorded lines when every fact still holds, else None (the full command runs)."""
    try:
        with open(os.path.join(home, FILE), encoding="utf-8") as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or not _holds(kept, home, argv, cwd, environ):
        return None
    text = kept.get("text")
    return text if isinstance(text, str) and text else None
