"""Inside Jupyter: which kernels and terminals each share link started, and ending them when the link ends.

A collaborator's kernels and terminals run as the owner and outlive their browser. The
login (login.py) hands every request of a link's session to `note_request`; a
request that creates a kernel, a notebook session or a terminal is watched until it
answers, and what it created (and did not exist before) is put down to that link.
Opening a notebook the owner already runs joins the owner's kernel: that kernel stays
the owner's.

When the link ends, `end_link` shuts those kernels and terminals down, lists the
processes they had started that still run (a `nohup` job, a server started from a
cell), and writes that into the link's record for `share --revoke` to report. The
bookkeeping is in Jupyter's memory: a restarted Jupyter has no kernel of anyone's.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado import web

from remote_agent.core import procs, times
from remote_agent.jupyter import share_links as shares

# Requests that start something: a kernel, a notebook's session (which may start one, or change it), a terminal.
_STARTS = re.compile(r"api/(kernels|sessions|terminals)(/[^/]+)?/?$")
SETTLE_SECONDS = 1.0  # how long processes get to end after their kernel or terminal did


@dataclass
class Started:
    """The kernels (by id) and terminals (by name) one link started."""

    kernels: set[str] = field(default_factory=set)
    terminals: set[str] = field(default_factory=set)


def _kernel_ids(handler: web.RequestHandler) -> set[str]:
    manager = handler.settings.get("kernel_manager")
    return set(manager.list_kernel_ids()) if manager is not None else set()


def _terminal_names(handler: web.RequestHandler) -> set[str]:
    manager = handler.settings.get("terminal_manager")
    return set(getattr(manager, "terminals", {}) or {}) if manager is not None else set()


def _named_in(body: Any, kind: str) -> set[str]:
    """The kernel id or terminal name an answer of the kernels, sessions or terminals API names."""
    if not isinstance(body, dict):
        return set()
    if kind == "terminals":
        return {str(body["name"])} if body.get("name") else set()
    kernel = body.get("kernel") if kind == "sessions" else body
    return {str(kernel["id"])} if isinstance(kernel, dict) and kernel.get("id") else set()


class Registry:
    """What each link started, kept by Jupyter's login for as long as Jupyter runs."""

    def __init__(self) -> None:
        self.by_link: dict[str, Started] = {}

    def note_request(self, handler: web.RequestHandler, share_id: str, base_url: str) -> None:
        """Watch a link session's request that may start a kernel or a terminal."""
        request = handler.request
        if request.method not in ("POST", "PATCH"):
            return
        match = _STARTS.match(request.path[len(base_url) :] if request.path.startswith(base_url) else "")
        if match is None:
            return
        kind = match[1]
        before = _terminal_names(handler) if kind == "terminals" else _kernel_ids(handler)
        original_finish = handler.finish
        registry = self

        def finish(chunk: Any = None) -> Any:
            try:
                registry._note_answer(handler, share_id, kind, chunk, before)
            except Exception as e:  # bookkeeping must never break the collaborator's request
                handler.log.warning("Could not note what a share link started: %s", e)  # type: ignore[attr-defined]
            return original_finish(chunk)

        handler.finish = finish  # type: ignore[method-assign]

    def _note_answer(self, handler: web.RequestHandler, share_id: str, kind: str, chunk: Any, before: set[str]) -> None:
        if handler.get_status() >= 300 or chunk is None:
            return
        body = json.loads(chunk) if isinstance(chunk, (str, bytes)) else chunk
        now = _terminal_names(handler) if kind == "terminals" else _kernel_ids(handler)
        new = _named_in(body, kind) & (now - before)
        started = self.by_link.setdefault(share_id, Started())
        (started.terminals if kind == "terminals" else started.kernels).update(new)

    async def end_link(self, settings: dict[str, Any], home: Path, share_id: str, log: Any) -> None:
        """Shut down what the link started; record that, and what still runs, in the link's record."""
        started = self.by_link.pop(share_id, Started())
        kernels: Any = settings.get("kernel_manager")
        terminals: Any = settings.get("terminal_manager")
        roots: list[int] = []
        live_kernels = [k for k in sorted(started.kernels) if kernels is not None and k in kernels.list_kernel_ids()]
        live_terminals = [t for t in sorted(started.terminals) if t in (getattr(terminals, "terminals", {}) or {})]
        for kernel_id in live_kernels:
            pid = getattr(getattr(kernels.get_kernel(kernel_id), "provisioner", None), "pid", None)
            if isinstance(pid, int):
                roots.append(pid)
        for name in live_terminals:
            pid = getattr(getattr(terminals.terminals[name], "ptyproc", None), "pid", None)
            if isinstance(pid, int):
                roots.append(pid)
        # Their processes, with start times (a pid may be reused), before the roots end and they lose their parent.
        tree = {p: procs.start_time(p) for root in roots for p in procs.descendants(root)}
        for kernel_id in live_kernels:
            try:
                await kernels.shutdown_kernel(kernel_id)
            except Exception as e:
                log.warning("Could not shut down kernel %s of an ended share link: %s", kernel_id, e)
        for name in live_terminals:
            try:
                await terminals.terminate(name, force=True)
            except Exception as e:
                log.warning("Could not end terminal %s of an ended share link: %s", name, e)
        if tree:
            await asyncio.sleep(SETTLE_SECONDS)
        still = [
            {"pid": p, "command": shlex.join(procs.cmdline(p))[:200]}
            for p, start in sorted(tree.items())
            if procs.is_alive(p) and procs.start_time(p) == start and p not in roots
        ]
        report = {
            "at": times.now_iso(),
            "kernels": live_kernels,
            "terminals": live_terminals,
            "still_running": still,
        }
        shares.record_cleanup(home, share_id, report)
        log.info(
            "Share link ended: shut down %d kernel(s) and %d terminal(s) it started; %d of their processes still run.",
            len(live_kernels),
            len(live_terminals),
            len(still),
        )
