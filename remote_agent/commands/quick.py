"""`url`, a repeated `serve --detach` and `status` answered before the CLI loads anything else.

Scripts and users run these often. Loading the CLI, the settings table and the records'
types costs several times what answering them takes, so the common case is answered here
with the standard library, `core.procs` and `core.loopback`: `url` from the keeper's record,
`serve --detach` and `status` from their own records (commands/warm_answer.py), whose facts
are checked first. Whenever this module is not sure (flags, a `.env` that mentions
REMOTE_AGENT_HOME, no tunnel up, a keeper that is not ours, any fact changed), it answers
None and the full command runs, which also says what is wrong. tests/test_quick.py and
tests/test_warm_answers.py hold the two paths to the same answer.
"""

from __future__ import annotations

import json
import os
import sys

from remote_agent.commands import warm_answer
from remote_agent.core import procs

TYPE_CHECKING = False  # typing is not loaded here
if TYPE_CHECKING:
    from typing import Any

KEEPER_MODULES = ("remote_agent.tunnel.keeper", "remote_agent.keeper")  # as supervision.ownership knows the keeper
# The tunnel record's version this module reads; another (older, newer) goes to the full command,
# which migrates or refuses it. tests/test_quick.py checks it against what a real keeper writes.
TUNNEL_VERSION = 1


def _home(environ: dict[str, str], cwd: str) -> str | None:
    """REMOTE_AGENT_HOME as the settings would resolve it, or None when a .env file has a say."""
    if environ.get("REMOTE_AGENT_ENV_FILE"):
        return None
    if environ.get("REMOTE_AGENT_HOME"):
        return os.path.expanduser(environ["REMOTE_AGENT_HOME"])
    try:
        with open(os.path.join(cwd, ".env"), "rb") as f:
            if b"REMOTE_AGENT_HOME" in f.read():
                return None  # it may name another home: the settings read it as they read .env files
    except FileNotFoundError:
        pass
    except OSError:
        return None
    state = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME", "~"), ".local", "state")
    return os.path.join(os.path.expanduser(state), "remote-agent")


def _record(path: str) -> dict[str, object] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def public_url(home: str) -> str | None:
    """The public URL when the tunnel is up and its keeper is this home's, as `status` would say."""
    jupyter = _record(os.path.join(home, "jupyter.json"))
    if jupyter is not None and jupyter.get("provider", "ngrok") != "ngrok":
        return None
    tunnel = _record(os.path.join(home, "tunnel.json"))
    if tunnel is None or tunnel.get("version") != TUNNEL_VERSION or tunnel.get("status") != "up":
        return None
    url, pid = tunnel.get("public_url"), tunnel.get("keeper_pid")
    if not isinstance(url, str) or not url or not isinstance(pid, int):
        return None
    if not procs.is_alive(pid) or not any(m in part for part in procs.cmdline(pid) for m in KEEPER_MODULES):
        return None
    return url if procs.environ(pid).get("REMOTE_AGENT_HOME") == home else None


def answer(argv: list[str]) -> int | None:
    """The exit code of a command answered here, or None for the full CLI to run it."""
    if argv != ["url"] and warm_answer.command_of(argv) is None:
        return None
    environ = dict(os.environ)
    try:
        cwd = os.getcwd()
    except OSError:
        return None  # the directory was removed: the full command says so
    home = _home(environ, cwd)
    if home is None:
        return None
    if argv == ["url"]:
        text = public_url(home)
    else:
        kept = warm_answer.answer(home, argv, cwd, environ)
        if kept is None:
            return None
        text = kept.get("text") if argv[0] == "serve" else status_text(kept, argv)
    if not isinstance(text, str) or not text:
        return None
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def status_text(kept: dict[str, Any], argv: list[str]) -> str | None:
    """A status that found nothing wrong last time, as it is now (what commands/status.py would print)."""
    import time

    from remote_agent.commands import status_live

    try:
        notebooks = status_live.running_notebooks(kept["notebooks_from"])
        if "--json" in argv:
            return json.dumps(status_live.document(json.loads(kept["document"]), kept["jupyter_pid"], notebooks))
        return "".join(line + "\n" for line in status_live.render(kept["rows"], time.time(), notebooks))
    except Exception:  # a record of any other shape: the full command answers
        return None
