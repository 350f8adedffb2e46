"""What `connect` runs on the server: find remote-agent, `serve --detach --json`, read the answer.

A command run over SSH gets no login shell's PATH (the README's clone keeps remote-agent in
`~/remote-agent/.venv/bin`, pip's --user and pipx in `~/.local/bin`), so the usual places
are tried in order. One small POSIX sh script does it all in one SSH connection: when
`serve` fails, the same script asks `status --json` whether Jupyter runs anyway, so that
`connect` can still forward to it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from remote_agent.core.errors import BadInput, StartFailed
from remote_agent.laptop.ssh_client import UNREACHABLE, SshTarget, run_command

# Tried in this order when no --remote-command is given ("" stands for `remote-agent` on PATH).
USUAL_PLACES = ("~/remote-agent/.venv/bin/remote-agent", "", "~/.local/bin/remote-agent")
MARK = "#connect "  # a line of the script's own, never a JSON line
NOT_FOUND = 127


@dataclass(frozen=True)
class RemoteJupyter:
    """Where Jupyter answers on the server, and what `serve` said of it."""

    port: int
    pid: int | None
    public_url: str | None
    serve_failed: bool  # serve failed there (its message is on stderr) but Jupyter runs


def _shell_path(path: str) -> str:
    """A path for sh, with a leading ~ left for the server's $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def script(remote_dir: str | None, remote_command: str | None, tunnel: str | None) -> str:
    lines = []
    if remote_dir:
        lines.append(f"cd {_shell_path(remote_dir)} || {{ echo '{MARK}no-dir'; exit 2; }}")
    if remote_command:
        # The user's own words, as they would type them on the server.
        lines.append(f'ra() {{ {remote_command} "$@"; }}')
    else:
        lines.append("found=")
        places = " ".join(_shell_path(p) if p else '"$(command -v remote-agent 2>/dev/null)"' for p in USUAL_PLACES)
        lines.append(f'for c in {places}; do if [ -n "$c" ] && [ -x "$c" ]; then found=$c; break; fi; done')
        lines.append(f"[ -n \"$found\" ] || {{ echo '{MARK}not-found'; exit {NOT_FOUND}; }}")
        lines.append('ra() { "$found" "$@"; }')
    serve = "ra serve --detach --json" + (f" --tunnel {shlex.quote(tunnel)}" if tunnel else "")
    lines.append(f"{serve}; rc=$?")
    lines.append(f"if [ $rc -ne 0 ] && [ $rc -ne {NOT_FOUND} ]; then echo '{MARK}status'; ra status --json; fi")
    lines.append("exit $rc")
    return "sh -c " + shlex.quote("\n".join(lines))


def _json_objects(lines: list[str]) -> list[dict[str, Any]]:
    found = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _port_of(url: object) -> int | None:
    try:
        return urlsplit(str(url)).port if url else None
    except ValueError:
        return None


def start(target: SshTarget, remote_dir: str | None, remote_command: str | None, tunnel: str | None) -> RemoteJupyter:
    """Make sure serve runs on the host; raise with what to do when it cannot."""
    done = run_command(target, script(remote_dir, remote_command, tunnel))
    lines = done.stdout.splitlines()
    host = target.host
    if done.returncode == UNREACHABLE:
        raise StartFailed(
            f"Cannot reach {target.destination} over SSH (ssh's message is above).",
            "Check the host name, the key (-i), the port (-p) and your network; "
            f"`ssh {target.destination}` by hand shows more.",
        )
    if f"{MARK}no-dir" in lines:
        raise BadInput(
            f"--remote-dir {remote_dir}: no such directory on {host}.", "Give a directory that exists there."
        )
    if f"{MARK}not-found" in lines:
        raise StartFailed(
            f"remote-agent was not found on {host} (looked for ~/remote-agent/.venv/bin/remote-agent, "
            "remote-agent on PATH, ~/.local/bin/remote-agent).",
            "Pass the way to run it there, e.g. --remote-command '~/tools/remote-agent/.venv/bin/remote-agent'.",
        )
    if done.returncode == NOT_FOUND and remote_command:
        raise StartFailed(
            f"--remote-command {remote_command!r} could not be run on {host} (the shell's message is above).",
            "Give the path of remote-agent there, e.g. --remote-command '~/remote-agent/.venv/bin/remote-agent'.",
        )
    before_status = lines[: lines.index(f"{MARK}status")] if f"{MARK}status" in lines else lines
    after_status = lines[len(before_status) + 1 :]
    ready = next((e for e in _json_objects(before_status) if e.get("event") == "ready"), None)
    if done.returncode == 0 and ready is not None:
        port = _port_of(ready.get("local_url"))
        if port is not None:
            pid = ready.get("jupyter_pid")
            public = ready.get("public_url")
            return RemoteJupyter(port, pid if isinstance(pid, int) else None, public or None, serve_failed=False)
    # serve failed there; when Jupyter runs anyway (no public URL), forward to it all the same.
    status = next(iter(_json_objects(after_status)), {})
    jupyter = status.get("jupyter") if isinstance(status.get("jupyter"), dict) else {}
    if jupyter and jupyter.get("running") and isinstance(jupyter.get("port"), int):
        pid = jupyter.get("pid")
        return RemoteJupyter(jupyter["port"], pid if isinstance(pid, int) else None, None, serve_failed=True)
    raise StartFailed(
        f"remote-agent serve failed on {host} (exit {done.returncode}); its message is above.",
        "Fix that on the server (e.g. `remote-agent doctor` there), then connect again.",
    )
