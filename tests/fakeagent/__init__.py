"""Test helpers around the fake ngrok agent in ``agent.py``.

``FakeNgrok(tmp_path / "ngrok")`` writes an executable ``ngrok`` wrapper (give its ``path`` to
pyngrok as ``ngrok_path`` or ``$PYNGROK_NGROK_PATH``) and a control directory that every agent
started through it shares: fault injection (``set_control``), the event log (``events``) and
the registry of running agents (``live_agent_pids``, ``kill_all``).

Public URLs look like ``http://amber-brisk-cedar.ngrok-free.dev.localhost:PORT`` (the token's dev
domain; ``http://1a2b3c4d.ngrok.localhost:PORT`` with ``dev_domain`` off). This machine's resolver does
not know ``*.localhost``, so :func:`http_request` connects to 127.0.0.1 and sends the public
host in the ``Host`` header, the way a browser reaching real ngrok would.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shlex
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from pyngrok import ngrok
from pyngrok.conf import PyngrokConfig

from . import agent

__all__ = [
    "AGENT_SCRIPT",
    "DEFAULT_TOKEN",
    "FakeNgrok",
    "HttpReply",
    "agent",
    "http_request",
    "public_address",
    "wait_until",
]

AGENT_SCRIPT = Path(agent.__file__).resolve()
DEFAULT_TOKEN = "fake-token-0123456789abcdef"

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def public_address(url: str) -> tuple[str, int, str]:
    """(address to connect to, port, Host header) for a fake public URL."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not a fake ngrok public URL: {url}")
    return "127.0.0.1", parts.port, parts.netloc


class HttpReply:
    """Status, headers (lower-cased names) and body of one HTTP exchange."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http_request(
    url: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> HttpReply:
    """One request to a fake public URL, over loopback, with the public Host header."""
    address, port, host = public_address(url)
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return HttpReply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


class FakeNgrok:
    """A fake ngrok binary plus the control directory its agents share."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.control_dir = self.directory / "control"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._control = agent.ControlDir(self.control_dir)
        self._configs: list[PyngrokConfig] = []
        self._known: dict[int, int | None] = {}  # pid -> /proc start time, kept after records go
        self._binaries: list[Path] = []
        self._cloud_listeners: list[socket.socket] = []
        self._stops: list[threading.Event] = []
        self.path = self.add_binary("ngrok")
        self._start_offline_edge()

    def add_binary(self, name: str) -> Path:
        """Another wrapper that shares the control dir: pyngrok keeps one agent per binary path."""
        path = self.directory / name
        # The control dir is set inside the wrapper so it survives a scrubbed environment;
        # exec keeps the wrapper's pid, which is what pyngrok and the tests signal.
        path.write_text(
            "#!/bin/sh\n"
            f"{agent.CONTROL_DIR_ENV}={shlex.quote(str(self.control_dir))}\n"
            f"export {agent.CONTROL_DIR_ENV}\n"
            f'exec {shlex.quote(sys.executable)} {shlex.quote(str(AGENT_SCRIPT))} "$@"\n'
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self._binaries.append(path)
        return path

    # ---- configuration

    def write_config(
        self,
        authtoken: str | None = DEFAULT_TOKEN,
        *,
        web_addr: str | None = "127.0.0.1:0",
        name: str = "ngrok.yml",
        version: str = "3",
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """An agent config file (v3 ``agent:`` block, or v2 top-level keys); ``None`` leaves a key out.

        ``web_addr`` defaults to an OS-chosen port so parallel tests never meet; pass
        ``None`` to get the agent's own default (127.0.0.1:4040 and up).
        """
        settings: dict[str, Any] = dict(extra or {})
        if authtoken is not None:
            settings["authtoken"] = authtoken
        if web_addr is not None:
            settings["web_addr"] = web_addr
        data: dict[str, Any] = {"version": version}
        if version == "3":
            data["agent"] = settings
        else:
            data.update(settings)
        path = self.directory / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        path.chmod(0o600)
        return path

    def pyngrok_config(
        self, config_path: Path | None = None, *, ngrok_path: Path | None = None, **kwargs: Any
    ) -> PyngrokConfig:
        """A PyngrokConfig for this fake (a default config file is written when none is given).

        Every config made here is killed by :meth:`close`.
        """
        if config_path is None:
            config_path = self.write_config()
        kwargs.setdefault("startup_timeout", 10)
        cfg = PyngrokConfig(ngrok_path=str(ngrok_path or self.path), config_path=str(config_path), **kwargs)
        self._configs.append(cfg)
        return cfg

    # ---- fault injection

    def control(self) -> dict[str, Any]:
        return self._control.read_control()

    def set_control(self, **values: Any) -> None:
        """Merge ``values`` into control.json atomically; a value of ``None`` removes the key."""
        merged = {**self._control.read_control(), **values}
        self._control.write_control({k: v for k, v in merged.items() if v is not None})

    def clear_control(self) -> None:
        self._control.write_control({})

    def start_cloud_endpoint(self, token: str = DEFAULT_TOKEN) -> str:
        """A Cloud Endpoint on the token's dev domain, as ngrok creates on some new accounts: agents
        asking for that domain get ERR_NGROK_334, and its URL serves ngrok's placeholder page. Its URL."""
        domain = agent.dev_domain(agent.token_id(token))
        # Claimed before the port is bound, as an agent does: the offline edge lets the port go.
        self.set_control(cloud_endpoints=[*(self.control().get("cloud_endpoints") or []), domain])
        listener = agent.bind_listener(self._control.domain_port(domain), agent.OFFLINE_EDGE_HANDOVER_SECONDS)
        port = listener.getsockname()[1]
        self._control.remember_domain_port(domain, port)
        self._cloud_listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                with contextlib.suppress(OSError):
                    if agent.read_head(client) is not None:
                        agent.send_and_close(client, agent.cloud_endpoint_page())
                client.close()

        threading.Thread(target=serve, name="cloud-endpoint", daemon=True).start()
        return f"http://{domain}:{port}"

    def serve_offline_urls(self) -> None:
        """The default, as ngrok does: a URL whose agent is gone (killed, stopped, or its endpoint
        deleted) answers 404 with ``ngrok-error-code: ERR_NGROK_3200`` (facts.md "An offline
        endpoint"), not a refused connection. Undoes :meth:`refuse_offline_urls`."""
        self.set_control(offline_edge=None)

    def refuse_offline_urls(self) -> None:
        """Opt out of the edge's 404: a gone agent's URL port refuses connections. Not what ngrok
        does; only for a test that must tell "nothing listens any more" from the edge's answer."""
        self.set_control(offline_edge=False)

    def _start_offline_edge(self) -> None:
        # Runs in this process: a thread holds each remembered domain port that no live agent
        # claims, and lets it go when an agent claims the domain again.
        stop = threading.Event()
        self._stops.append(stop)
        threading.Thread(target=self._offline_edge, args=(stop,), name="offline-edge", daemon=True).start()

    def _offline_edge(self, stop: threading.Event) -> None:
        held: dict[str, socket.socket] = {}
        try:
            while not stop.wait(0.05):
                ports = agent._read_json_object(self.control_dir / agent.DOMAINS_FILE)
                control = self.control()
                if control.get("offline_edge") is False:  # refuse_offline_urls: hold nothing
                    ports = {}
                claimed = {d for r in self._control.live_agents() for d in r.get("domains", [])}
                claimed |= set(control.get("cloud_endpoints") or [])
                for domain, listener in list(held.items()):
                    if domain in claimed or domain not in ports:
                        listener.close()
                        del held[domain]
                for domain, port in ports.items():
                    if domain in claimed or domain in held or not isinstance(port, int):
                        continue
                    try:
                        listener = agent.bind_listener(port)
                    except OSError:
                        continue  # an agent that is starting holds it
                    listener.settimeout(0.0)
                    held[domain] = listener
                for domain, listener in held.items():
                    self._answer_offline(listener, f"http://{domain}:{ports[domain]}")
        finally:
            for listener in held.values():
                listener.close()

    @staticmethod
    def _answer_offline(listener: socket.socket, url: str) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # nothing waiting (non-blocking)
            client.setblocking(True)
            threading.Thread(target=agent.answer_offline, args=(client, url), daemon=True).start()

    def start_outage(self, seconds: float) -> str:
        """Cut every live agent off the (simulated) ngrok cloud for ``seconds``; returns the outage id."""
        outage_id = f"outage-{secrets.token_hex(6)}"
        self.set_control(outage={"id": outage_id, "seconds": seconds})
        return outage_id

    # ---- observation

    def events(self) -> list[dict[str, Any]]:
        return self._control.read_events()

    def wait_for_event(self, event: str, *, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first event named ``event`` whose fields equal ``match``."""

        def find() -> dict[str, Any] | None:
            for item in self.events():
                if item.get("event") == event and all(item.get(k) == v for k, v in match.items()):
                    return item
            return None

        return wait_until(find, timeout=timeout, message=f"event {event} {match}")

    def agents(self) -> list[dict[str, Any]]:
        """Registry records of the agents that are alive now."""
        records = self._control.live_agents()
        for record in records:
            self._known[record["pid"]] = record.get("start_time")
        return records

    def _scan_proc(self) -> dict[int, int]:
        """Processes of this fake found in /proc (pid -> start time), registered or not yet.

        An agent writes its registry record a few milliseconds after exec; the scan also
        catches it before that, and while it is still the wrapper shell.
        """
        marker = f"{agent.CONTROL_DIR_ENV}={self.control_dir}".encode()
        wrappers = {str(p).encode() for p in self._binaries}
        found: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                ours = bool(wrappers.intersection(args[:2])) or (
                    str(AGENT_SCRIPT).encode() in args
                    and marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                )
            except OSError:
                continue
            started = agent.process_start_time(int(entry)) if ours else None
            if started is not None:
                found[int(entry)] = started
        return found

    def _refresh(self) -> None:
        self.agents()
        for record in self._control.agent_records():
            self._known.setdefault(record["pid"], record.get("start_time"))
        self._known.update(self._scan_proc())

    def _alive(self) -> list[int]:
        return sorted(
            pid
            for pid, started in self._known.items()
            if started is not None and agent.process_start_time(pid) == started
        )

    def live_agent_pids(self) -> list[int]:
        """Pids of fake agents that really run (checked in /proc; zombies and reused pids excluded)."""
        self._refresh()
        return self._alive()

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every agent of this fake (registered or found in /proc) and wait until none runs."""

        def none_left() -> bool:
            self._refresh()
            alive = self._alive()
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return not alive

        wait_until(none_left, timeout=timeout, message="fake agents to die")

    def close(self) -> None:
        """Stop what this fake started: pyngrok's agents (reaped by pyngrok), any other agent, Cloud Endpoints."""
        for stop in self._stops:
            stop.set()
        for listener in self._cloud_listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for cfg in self._configs:
            with contextlib.suppress(Exception):
                ngrok.kill(cfg)
        self.kill_all()
