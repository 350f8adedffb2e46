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

Each fact is kept as the command saw it when it read it, not as it is when the record is
written: the .env files and remote-agent's code when the settings were resolved, the places
kernel discovery looked when it looked, the home's records when the answer began (and a
record is written only if they are still the same at the end). A change while the command
ran thus makes the next one run in full, never keeps an old answer. A secret given in the
environment is checked by the full serve every time (a password only has a slow hash on
record), so such a serve is never answered here; no secret's value goes into a record.
Recording never fails a command. REMOTE_AGENT_HOME/warm-COMMAND.json (0600) are written here
and nowhere else (core/home.py names them).
"""

from __future__ import annotations

import json
import os
import sys

from remote_agent.core import fingerprints, procs

TYPE_CHECKING = False  # typing is not loaded on the quick path
if TYPE_CHECKING:
    from typing import Any

VERSION = 2
# The command lines answered from a record, by the command whose record answers them.
ANSWERED = {"serve": (["serve", "--detach"],), "status": (["status"], ["status", "--json"])}
# Set anew by each SSH login, and read by no command (of SSH_CONNECTION, only the server's
# address and port are: the ssh command serve prints names them).
PER_LOGIN = frozenset(
    {"SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "OLDPWD", "PWD", "_", "SHLVL"}
)
# What in the home changes while nothing a command reads does: logs (and their rotations),
# lock files, a file being written (".NAME.tmp"), the collaboration databases, these records.
UNREAD_NAMES = frozenset({"collaboration"})
PREFIX = "warm-"
RACY_SLACK_NS = 20_000_000
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Invocation:
    """A command as it was typed: its words, where, the environment it had (secrets still in it),
    and the files its settings were resolved from as they were then."""

    def __init__(
        self,
        argv: list[str],
        cwd: str,
        environ: dict[str, str],
        files: dict[str, list[int] | None] | None = None,
        folders: dict[str, list[str] | None] | None = None,
        settled: bool = True,
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.environ = environ
        self.files = files or {}
        self.folders = folders or {}
        self.settled = settled  # False: a file the settings came from changed while they were read


def file_name(command: str) -> str:
    return f"{PREFIX}{command}.json"


def command_of(argv: list[str]) -> str | None:
    """The command whose record may answer this command line, if any."""
    return next((command for command, lines in ANSWERED.items() if argv in lines), None)


def environment_digest(environ: dict[str, str], secret_names: list[str]) -> str:
    """One hash of the environment a command ran with, but for what each SSH login sets anew and the secrets."""
    import hashlib  # sha256: other variables may hold secrets of their own (cloud keys); no checksum will do

    skip = PER_LOGIN.union(secret_names)
    kept = sorted((k, v) for k, v in environ.items() if k not in skip)
    server = environ.get("SSH_CONNECTION", "").split()[2:4]
    text = json.dumps([kept, server, sorted(k for k in secret_names if k in environ)], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def home_paths(home: str) -> list[str]:
    """The files and folders in the home a command may read (direct children only)."""
    try:
        names = os.listdir(home)
    except OSError:
        return []
    read = (
        n
        for n in names
        if n not in UNREAD_NAMES and not n.startswith((".", PREFIX)) and ".log" not in n and not n.endswith(".lock")
    )
    return sorted(os.path.join(home, n) for n in read)


def home_files(home: str) -> dict[str, list[int] | None]:
    """The home's files a command may read, as they are now."""
    return fingerprints.signatures(home_paths(home))


def code_files() -> list[str]:
    """remote-agent's own code, and the Python running it: an upgrade changes one of them."""
    found = [sys.executable, PACKAGE]
    import sysconfig  # the packages remote-agent runs on (Jupyter, pyngrok ...): an upgrade changes the folder

    found.append(sysconfig.get_paths()["purelib"])
    for folder, subfolders, names in os.walk(PACKAGE):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        found.append(folder)
        found.extend(os.path.join(folder, n) for n in names if n.endswith(".py"))
    return found


def at_start(
    argv: list[str], cwd: str, environ: dict[str, str], env_files: list[str], root_dir: str | None, read_at_ns: int
) -> Invocation:
    """The invocation, with what its settings were read from (at `read_at_ns`) as it is now, right after."""
    if command_of(argv) is None:
        return Invocation(argv, cwd, environ)
    files = fingerprints.signatures([*env_files, *code_files()])
    folders = {root_dir: fingerprints.subfolders(root_dir)} if root_dir else {}  # it must still be there
    # A .env changed since the settings began to be read may not be what they hold (git's "racy"
    # files); the slack covers file times taken from the kernel's coarse clock.
    settled = all((seen := files[p]) is None or seen[3] < read_at_ns - RACY_SLACK_NS for p in env_files)
    return Invocation(argv, cwd, environ, files, folders, settled)


def replayable(command: str, invocation: Invocation, secret_names: tuple[str, ...]) -> bool:
    """Whether this command line may be answered from a record at all."""
    if invocation.argv not in ANSWERED[command] or not invocation.settled:
        return False
    return command != "serve" or not any(name in invocation.environ for name in secret_names)


class Facts:
    """What an answer rests on besides the invocation, each as the command saw it."""

    def __init__(self, home_then: dict[str, list[int] | None]) -> None:
        self.home_then = home_then  # the home's files when the answer began
        self.files: dict[str, list[int] | None] = {}
        self.folders: dict[str, list[str] | None] = {}
        self.trust: dict[str, list[int] | None] = {}
        self.pids: list[int] = []
        self.port = 0


def record(
    home: str, command: str, invocation: Invocation, secret_names: tuple[str, ...], answer: dict[str, Any], facts: Facts
) -> None:
    """Keep an answer for the next time, if it may be given from a record and nothing changed while it was made."""
    from pathlib import Path

    from remote_agent.core.errors import RemoteAgentError
    from remote_agent.core.store import write_json  # the writer's side: the full command has these loaded

    starts = {str(pid): procs.start_time(pid) for pid in facts.pids}
    changed_meanwhile = home_files(home) != facts.home_then
    if not replayable(command, invocation, secret_names) or None in starts.values() or changed_meanwhile:
        forget(home, command)
        return
    kept = {
        "version": VERSION,
        "program": [sys.executable, PACKAGE],
        "cwd": invocation.cwd,
        "environment": environment_digest(invocation.environ, list(secret_names)),
        "secret_names": list(secret_names),
        "files": {**facts.home_then, **facts.files, **invocation.files},
        "folders": {**facts.folders, **invocation.folders},
        "trust": facts.trust,
        "processes": starts,
        "port": facts.port,
        "answer": answer,
    }
    try:
        write_json(Path(home) / file_name(command), kept)
    except (OSError, RemoteAgentError):
        forget(home, command)  # a full disk or a read-only home: the next one runs in full


def forget(home: str, command: str) -> None:
    """No answer on record: the next one runs in full."""
    try:  # noqa: SIM105 (contextlib is not loaded by the quick answers)
        os.unlink(os.path.join(home, file_name(command)))
    except OSError:
        pass


def _holds(kept: dict[str, Any], home: str, cwd: str, environ: dict[str, str]) -> bool:
    """Every fact of the record, cheapest first."""
    from remote_agent.jupyter.running import answers

    if kept.get("version") != VERSION or kept.get("program") != [sys.executable, PACKAGE] or kept.get("cwd") != cwd:
        return False
    secret_names = kept["secret_names"]
    if kept["environment"] != environment_digest(environ, secret_names):
        return False
    files = kept["files"]
    if any(path not in files for path in home_paths(home)):
        return False  # a new file in the home
    if any(fingerprints.signature(path) != seen for path, seen in files.items()):
        return False
    if any(fingerprints.subfolders(path) != seen for path, seen in kept["folders"].items()):
        return False
    if any(fingerprints.owner_and_mode(path) != seen for path, seen in kept["trust"].items()):
        return False
    processes = kept["processes"].items()
    if any(procs.start_time(int(pid)) != start or not procs.is_alive(int(pid)) for pid, start in processes):
        return False
    port = kept["port"]
    return isinstance(port, int) and answers(port)


def answer(home: str, argv: list[str], cwd: str, environ: dict[str, str]) -> dict[str, Any] | None:
    """The recorded answer to this command line when every fact still holds, else None (the full command runs)."""
    command = command_of(argv)
    if command is None:
        return None
    try:
        with open(os.path.join(home, file_name(command)), encoding="utf-8") as f:
            kept = json.load(f)
        if not isinstance(kept, dict) or not _holds(kept, home, cwd, environ):
            return None
        if command == "serve" and any(name in environ for name in kept["secret_names"]):
            return None  # checked by the full serve every time
        found = kept["answer"]
    except Exception:
        return None
    return found if isinstance(found, dict) else None
