"""Telling the user about a new public URL: a command and a webhook, off the keeper's thread.

The keeper calls `Notifier.url_changed` where it records a new URL; that only queues the
news. One worker thread runs the hooks in order, each with a timeout, so a slow or
failing hook never delays the tunnel, and a failure is logged, never raised.

The command (REMOTE_AGENT_ON_URL_CHANGE) runs without a shell when it is a plain command
line: `announce --to me` runs `announce --to me URL`. When it uses shell syntax ($, |,
;, &, <, >, backquotes, globs, ~ ...) it runs as `/bin/sh -c COMMAND remote-agent URL`,
where the URL is "$1". Either way the environment holds REMOTE_AGENT_PUBLIC_URL,
REMOTE_AGENT_PREVIOUS_URL (empty for the first URL) and REMOTE_AGENT_HOST, and no secret.

The webhook (REMOTE_AGENT_WEBHOOK) gets a POST with the JSON body
{"public_url", "previous_url", "at", "host"}. A `user:password@` in its URL is sent as basic
auth; a redirect is not followed (it would carry the public URL, and that password, to
another address); a plain http:// URL to another machine is not sent to (webhook_url.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from remote_agent import __version__
from remote_agent.core.redaction import redact, scrubbed
from remote_agent.core.times import now_iso
from remote_agent.tunnel import webhook_url

log = logging.getLogger("remote_agent.tunnel.notify")

COMMAND_TIMEOUT = 30.0
WEBHOOK_TIMEOUT = 10.0
# A hook that fails (the network is not up yet after a reboot, a receiver hiccups) is tried
# again after these delays, unless a newer URL is already waiting.
RETRY_DELAYS = (5.0, 30.0)
QUEUE_SIZE = 16
OUTPUT_TAIL = 300
SHELL_CHARS = frozenset("$`|&;<>(){}[]*?~#!\n\\")
# Variables of the keeper's own that a hook has no business seeing.
DROPPED_ENV = ("PYTHONPATH", "REMOTE_AGENT_ON_URL_CHANGE", "REMOTE_AGENT_WEBHOOK")


def needs_shell(command: str) -> bool:
    return any(c in SHELL_CHARS for c in command)


def command_argv(command: str, public_url: str) -> list[str]:
    if needs_shell(command):
        return ["/bin/sh", "-c", command, "remote-agent", public_url]
    return [*shlex.split(command), public_url]


def hook_environment(
    environ: Mapping[str, str], public_url: str, previous_url: str | None, host: str
) -> dict[str, str]:
    env = {k: v for k, v in scrubbed(environ).items() if k not in DROPPED_ENV}
    env["REMOTE_AGENT_PUBLIC_URL"] = public_url
    env["REMOTE_AGENT_PREVIOUS_URL"] = previous_url or ""
    env["REMOTE_AGENT_HOST"] = host
    return env


def webhook_body(public_url: str, previous_url: str | None, host: str) -> dict[str, Any]:
    return {"public_url": public_url, "previous_url": previous_url, "at": now_iso(), "host": host}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as the HTTPError it is, never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


@dataclass(frozen=True)
class Change:
    public_url: str
    previous_url: str | None


class Notifier:
    """Runs the configured hooks for each new URL, in order, on one background thread."""

    def __init__(
        self,
        command: str | None,
        webhook: str | None,
        secrets: tuple[str | None, ...] = (),
        environ: Mapping[str, str] | None = None,
        host: str | None = None,
        command_timeout: float = COMMAND_TIMEOUT,
        webhook_timeout: float = WEBHOOK_TIMEOUT,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.command = command
        self.webhook = webhook
        # A Slack or Discord URL inside the command is a secret too: mask it in what is logged.
        urls = tuple(re.findall(r"[a-z]+://[^\s'\"`;|&<>()]+", command or ""))
        webhook_password = webhook_url.password_of(webhook) if webhook else None
        self.secrets = (*secrets, command, webhook, webhook_password, *urls)
        self.environ = dict(os.environ if environ is None else environ)
        self.host = host or socket.gethostname()
        self.command_timeout = command_timeout
        self.webhook_timeout = webhook_timeout
        self.retry_delays = retry_delays
        self.pending: queue.Queue[Change] = queue.Queue(QUEUE_SIZE)
        self.idle = threading.Event()
        self.idle.set()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.webhook)

    def url_changed(self, public_url: str, previous_url: str | None) -> None:
        """Queue the news and return at once; never raises."""
        if not self.enabled:
            return
        with self._lock:
            self.idle.clear()
            try:
                self.pending.put_nowait(Change(public_url, previous_url))
            except queue.Full:
                log.warning("too many URL changes queued for the hooks; skipping %s", public_url)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="url-hooks", daemon=True)
                self._worker.start()

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued change has been handled (for tests and a clean exit)."""
        return self.idle.wait(timeout)

    def _work(self) -> None:
        while True:
            change = self.pending.get()
            try:
                self._deliver(change)
            except Exception:  # a bug in a hook must not end the worker
                log.exception("the URL hooks failed unexpectedly")
            with self._lock:
                if self.pending.empty():
                    self.idle.set()

    def _deliver(self, change: Change) -> None:
        todo = [name for name, value in (("command", self.command), ("webhook", self.webhook)) if value]
        for attempt in range(len(self.retry_delays) + 1):
            todo = [name for name in todo if not self._run(name, change)]
            if not todo:
                return
            if attempt == len(self.retry_delays):
                break
            if not self.pending.empty():
                log.info("a newer URL is waiting; not retrying the %s for %s", " and ".join(todo), change.public_url)
                return
            delay = self.retry_delays[attempt]
            log.info("trying the %s again in %.0f s", " and ".join(todo), delay)
            time.sleep(delay)
        log.warning("gave up on the %s for %s", " and ".join(todo), change.public_url)

    def _run(self, name: str, change: Change) -> bool:
        if name == "command" and self.command:
            return self.run_command(self.command, change)
        if name == "webhook" and self.webhook:
            return self.post_webhook(self.webhook, change)
        return True

    def run_command(self, command: str, change: Change) -> bool:
        argv = command_argv(command, change.public_url)
        env = hook_environment(self.environ, change.public_url, change.previous_url, self.host)
        started = time.monotonic()
        with tempfile.TemporaryFile() as output:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: a timeout kills all of it
                )
            except OSError as e:
                log.warning("the URL-change command could not start: %s", e.strerror or e)
                return False
            try:
                code = proc.wait(self.command_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                log.warning("the URL-change command did not finish within %.0f s; stopped it", self.command_timeout)
                return False
            output.seek(0)
            tail = output.read()[-OUTPUT_TAIL:].decode(errors="replace").strip()
        took = time.monotonic() - started
        if code != 0:
            said = f": {redact(tail, self.secrets)}" if tail else ""
            log.warning("the URL-change command failed (exit %s, %.1f s)%s", code, took, said)
            return False
        log.info("the URL-change command ran for %s (%.1f s)", change.public_url, took)
        return True

    def post_webhook(self, url: str, change: Change) -> bool:
        """True when done with this URL: delivered, or refused for a reason a retry cannot change."""
        where = webhook_url.where(url)
        if webhook_url.in_clear(url):
            log.warning(
                "not sending the new URL to the webhook %s: plain http to another machine would carry it "
                "unencrypted; use its https:// URL",
                where,
            )
            return True
        target, authorization = webhook_url.credentials(url)
        headers = {"Content-Type": "application/json", "User-Agent": f"remote-agent/{__version__}"}
        if authorization:
            headers["Authorization"] = authorization
        body = json.dumps(webhook_body(change.public_url, change.previous_url, self.host)).encode()
        request = urllib.request.Request(  # noqa: S310 (the user's own http(s) URL, checked in settings)
            target, data=body, method="POST", headers=headers
        )
        try:
            with _OPENER.open(request, timeout=self.webhook_timeout) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                location = e.headers.get("Location") or ""
                to = webhook_url.where(urljoin(target, location)) if location else "nowhere"
                log.warning(
                    "the webhook %s answered %s, a redirect to %s; remote-agent does not follow redirects "
                    "(they would carry the public URL elsewhere): put the final URL in REMOTE_AGENT_WEBHOOK",
                    where,
                    e.code,
                    to,
                )
                return True
            log.warning("the webhook %s answered %s %s", where, e.code, e.reason)
            return False
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            log.warning("the webhook %s could not be reached: %s", where, redact(str(reason), self.secrets))
            return False
        log.info("the webhook %s took the new URL (%s)", where, status)
        return True
