"""Inside Jupyter: which notebooks have a running cell, since when, and what they printed last.

A Jupyter server extension (loaded by `--ServerApp.jpserver_extensions`, see
collaboration.server_args) that answers `GET /remote-agent/notebooks` for `status`. It reads
the documents that live on the server (jupyter-collaboration), where server-side execution
(jupyter-server-nbmodel) marks a running cell and writes its outputs.

It also has a changing document written to its file at least every few seconds (KeepSaved).

Jupyter's own login is not asked for: `status` has no browser session. Instead each start
writes a new random secret to a 0600 file under REMOTE_AGENT_HOME, which only the owner's
user can read; a request without it is refused.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback

from remote_agent.core import times
from remote_agent.core.store import ensure_private_dir, write_private
from remote_agent.jupyter.collaboration import STATUS_ROUTE, state_dir, status_token_file

EXECUTION_EVENTS = "https://events.jupyter.org/jupyter_server_nbmodel/cell_execution/v1"
LAST_OUTPUT_CHARS = 200
SAVE_AT_LEAST_EVERY = 3.0  # seconds a changing document may go unsaved


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "remote_agent.jupyter.notebook_status"}]


def _now() -> str:
    return times.now_iso()


def last_line(text: str) -> str:
    """The line a terminal would show last: the final non-empty line, after its last carriage return."""
    for line in reversed(text.splitlines()):
        shown = line.rsplit("\r", 1)[-1].strip()
        if shown:
            return shown[:LAST_OUTPUT_CHARS]
    return ""


def last_output(outputs: list[dict[str, Any]]) -> str:
    """The last line a cell's outputs show: printed text, a value, or an error."""
    for output in reversed(outputs):
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            line = last_line("".join(text) if isinstance(text, list) else str(text))
        elif kind == "error":
            line = f"{output.get('ename', '')}: {output.get('evalue', '')}".strip(": ")
        else:
            plain = (output.get("data") or {}).get("text/plain", "")
            line = last_line("".join(plain) if isinstance(plain, list) else str(plain))
        if line:
            return line
    return ""


class Running:
    """When each cell began to run, as the server-side executor announced it (keyed by room and cell)."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, str], str] = {}
        self.first_seen: dict[tuple[str, str], str] = {}

    async def on_execution(self, logger: object, schema_id: str, data: dict[str, Any]) -> None:
        key = (str(data.get("document_id")), str(data.get("cell_id")))
        if data.get("event_type") == "execution_start":
            self.started[key] = str(data.get("timestamp") or _now())
        else:
            self.started.pop(key, None)

    def since(self, key: tuple[str, str]) -> str:
        return self.started.get(key) or self.first_seen.setdefault(key, _now())

    def notebooks(self, rooms: dict[str, Any]) -> list[dict[str, Any]]:
        """Each running cell of the open documents: path, cell index (from 1), since, last output line."""
        found = []
        seen = set()
        for room_id, room in list(rooms.items()):
            document = getattr(room, "_document", None)
            if getattr(room, "file_type", None) != "notebook" or document is None:
                continue
            for index, ycell in enumerate(list(document.ycells)):
                cell = ycell.to_py()
                if cell.get("execution_state") != "running":
                    continue
                key = (room_id, str(cell.get("id")))
                seen.add(key)
                found.append(
                    {
                        "path": str(getattr(document, "path", "") or ""),
                        "cell": index + 1,
                        "running_since": self.since(key),
                        "last_output": last_output(list(cell.get("outputs") or [])),
                    }
                )
        for key in set(self.first_seen) - seen:
            del self.first_seen[key]
        return found


class NotebooksHandler(web.RequestHandler):
    def initialize(self, token: str, running: Running, serverapp: Any) -> None:
        self.token = token
        self.running = running
        self.serverapp = serverapp

    @allow_unauthenticated  # checked here instead: the secret in the owner's 0600 file
    def get(self) -> None:
        given = self.request.headers.get("Authorization", "").removeprefix("token ").strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPError(403)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"notebooks": self.running.notebooks(self._rooms())}))

    def _rooms(self) -> dict[str, Any]:
        return rooms_of(self.serverapp)


def rooms_of(serverapp: Any) -> dict[str, Any]:
    """The documents open on the server (jupyter-collaboration's rooms), by room id."""
    apps = serverapp.extension_manager.extension_apps.get("jupyter_server_ydoc") or set()
    server = getattr(next(iter(apps), None), "ywebsocket_server", None)
    rooms: dict[str, Any] = getattr(server, "rooms", None) or {}
    return rooms


class KeepSaved:
    """Write a changing document to its file at least every few seconds.

    jupyter-collaboration saves a document a second after its last change: a cell that
    prints more often than that would put the save off until it ends, and a crash meanwhile
    would lose all it printed. A save that has waited this long is done at once instead.
    """

    def __init__(self, serverapp: Any) -> None:
        self.serverapp = serverapp
        self.waiting_since: dict[str, float] = {}

    def check(self) -> None:
        now = time.monotonic()
        rooms = rooms_of(self.serverapp)
        for room_id in set(self.waiting_since) - set(rooms):
            del self.waiting_since[room_id]
        for room_id, room in list(rooms.items()):
            pending = getattr(room, "_saving_document", None)
            if pending is None or pending.done():
                self.waiting_since.pop(room_id, None)
                continue
            since = self.waiting_since.setdefault(room_id, now)
            if now - since >= SAVE_AT_LEAST_EVERY and hasattr(room, "_save_to_disc"):
                del self.waiting_since[room_id]
                room._save_to_disc()


def _load_jupyter_server_extension(serverapp: Any) -> None:
    home = os.environ.get("REMOTE_AGENT_HOME")
    if not home:
        return
    running = Running()
    try:
        from jupyter_server_nbmodel.event_logger import event_logger

        event_logger.add_listener(schema_id=EXECUTION_EVENTS, listener=running.on_execution)
    except ImportError:  # without server-side execution, "since" is when status first saw the cell run
        pass
    token = secrets.token_urlsafe(32)
    ensure_private_dir(state_dir(Path(home)))
    write_private(status_token_file(Path(home)), token + "\n")
    route = url_path_join(serverapp.base_url, STATUS_ROUTE)
    PeriodicCallback(KeepSaved(serverapp).check, 1000).start()
    handler = (route, NotebooksHandler, {"token": token, "running": running, "serverapp": serverapp})
    serverapp.web_app.add_handlers(".*$", [handler])
