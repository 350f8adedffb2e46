"""The fake ngrok agent, driven through pyngrok exactly as remote_agent drives the real one.

Every agent a test starts is killed by the ``fake`` fixture (pyngrok's own ``kill`` first, then
SIGKILL by pid for anything left); waits poll with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import signal
import socket
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakeagent import DEFAULT_TOKEN, FakeNgrok, agent, http_request, public_address, wait_until
from pyngrok import ngrok, process
from pyngrok.exception import PyngrokNgrokError, PyngrokNgrokHTTPError, PyngrokNgrokURLError
from pyngrok.log import NgrokLog

PUBLIC_URL = r"http://[a-z]+-[a-z]+-[a-z]+\.ngrok-free\.dev\.localhost:\d+"  # a dev domain
RANDOM_URL = r"http://[0-9a-f]{8}\.ngrok\.localhost:\d+"  # with dev_domain off


# --------------------------------------------------------------------------- upstreams


class RecordingHandler(BaseHTTPRequestHandler):
    """Answers 200 and records each request's path and headers."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server: RecordingServer = self.server  # type: ignore[assignment]
        server.requests.append((self.path, dict(self.headers.items())))
        body = b"hello from upstream"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class UpgradeEchoHandler(socketserver.BaseRequestHandler):
    """A websocket-like upstream: answers the upgrade request with 101, then echoes bytes."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        head = recv_until(sock, b"\r\n\r\n")
        server: EchoServer = self.server  # type: ignore[assignment]
        server.heads.append(head)
        if head:
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        echo(sock)


class PlainEchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        echo(self.request)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.heads: list[bytes] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "stream closed early"
        data += chunk
    return data


def serve_in_thread(server: socketserver.BaseServer) -> Callable[[], None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline(url: str) -> bool:
    """What a visitor sees once no agent serves the URL, as from ngrok (facts.md "An offline
    endpoint"): 404 with ERR_NGROK_3200, not the upstream's answer and not a refused connection."""
    try:
        reply = http_request(url, timeout=2)
    except OSError:
        return False  # the agent's listener is closing and the edge has not taken the port yet
    return (reply.status, reply.headers.get("ngrok-error-code")) == (404, "ERR_NGROK_3200")


def request_fails(url: str) -> bool:
    try:
        http_request(url, timeout=1)
    except (OSError, http.client.HTTPException):
        return True
    return False


def error_body(error: PyngrokNgrokHTTPError) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _no_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyngrok and the agent both read it; a developer's own token must not leak in.
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNgrok]:
    fake = FakeNgrok(tmp_path / "ngrok")
    try:
        yield fake
    finally:
        fake.close()
    assert fake.live_agent_pids() == []


@pytest.fixture
def upstream() -> Iterator[RecordingServer]:
    server = RecordingServer()
    stop = serve_in_thread(server)
    try:
        yield server
    finally:
        stop()


def start_echo(handler: type[socketserver.BaseRequestHandler]) -> tuple[EchoServer, Callable[[], None]]:
    server = EchoServer(handler)
    return server, serve_in_thread(server)


# --------------------------------------------------------------------------- tests


def test_version_even_with_a_scrubbed_environment(fake: FakeNgrok) -> None:
    result = subprocess.run(
        [str(fake.path), "--version"], env={}, capture_output=True, text=True, timeout=10, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"ngrok version {agent.LATEST_VERSION}\n")
    assert ngrok.get_version(fake.pyngrok_config())[0] == agent.LATEST_VERSION
    fake.set_control(version="3.22.1")
    assert ngrok.get_version(fake.pyngrok_config())[0] == "3.22.1"


def test_connect_forwards_to_upstream_with_public_host(fake: FakeNgrok, upstream: RecordingServer) -> None:
    cfg = fake.pyngrok_config()
    tunnel = ngrok.connect(upstream.url, name="jupyter", pyngrok_config=cfg)
    url = str(tunnel.public_url)
    assert re.fullmatch(PUBLIC_URL, url)
    assert tunnel.upstream == {"url": upstream.url, "protocol": "http1"}

    reply = http_request(url, "/tree?x=1")
    assert (reply.status, reply.body) == (200, b"hello from upstream")
    path, headers = upstream.requests[-1]
    assert path == "/tree?x=1"
    assert headers["Host"] == url.removeprefix("http://")  # the public name reaches the upstream

    api_url = str(ngrok.get_ngrok_process(cfg).api_url)
    assert [t.public_url for t in ngrok.get_tunnels(cfg)] == [url]
    tunnels = ngrok.api_request(f"{api_url}/api/tunnels")["tunnels"]
    assert tunnels[0]["public_url"] == url
    assert tunnels[0]["proto"] == "http"
    assert tunnels[0]["config"] == {"addr": upstream.url, "inspect": False}
    assert ngrok.api_request(f"{api_url}/api/status")["status"] == "online"
    assert ngrok.api_request(f"{api_url}/api/endpoints/jupyter")["url"] == url

    ngrok.disconnect(url, cfg)
    wait_until(lambda: offline(url), timeout=5, message="the deleted endpoint's URL to answer offline")
    with pytest.raises(PyngrokNgrokHTTPError) as missing:
        ngrok.api_request(f"{api_url}/api/endpoints/jupyter")
    assert missing.value.status_code == 404

    pid = ngrok.get_ngrok_process(cfg).proc.pid
    assert fake.live_agent_pids() == [pid]
    names = [(e["event"], e.get("name")) for e in fake.events() if e["pid"] == pid]
    assert names == [("started", None), ("endpoint_created", "jupyter"), ("endpoint_deleted", "jupyter")]
    logs = ngrok.get_ngrok_process(cfg).logs
    web = next(log for log in logs if log.msg == "starting web service")
    assert (web.lvl, web.obj, web.addr) == ("INFO", "web", api_url.removeprefix("http://"))
    started = next(log for log in logs if log.msg == "started tunnel")
    assert (started.obj, started.url) == ("tunnels", url)  # type: ignore[attr-defined]


def test_long_lived_bidirectional_stream(fake: FakeNgrok) -> None:
    server, stop = start_echo(UpgradeEchoHandler)
    try:
        cfg = fake.pyngrok_config()
        url = str(ngrok.connect(f"http://127.0.0.1:{server.port}", name="ws", pyngrok_config=cfg).public_url)
        address, port, host = public_address(url)
        with socket.create_connection((address, port), timeout=5) as sock:
            sock.sendall(
                f"GET /api/kernels/k/channels HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n\r\n".encode()
            )
            assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
            for i in range(100):  # many small round trips on one connection
                message = f"frame {i};".encode() * (i + 1)
                sock.sendall(message)
                assert recv_exactly(sock, len(message)) == message
            blob = os.urandom(2 << 20)  # bigger than any buffer: both directions flow at once
            sender = threading.Thread(target=sock.sendall, args=(blob,))
            sender.start()
            assert recv_exactly(sock, len(blob)) == blob
            sender.join()
            sock.shutdown(socket.SHUT_WR)  # the half-close reaches the upstream, which closes
            assert sock.recv(1) == b""
        assert f"Host: {host}\r\n".encode() in server.heads[0]
    finally:
        stop()


def test_tcp_endpoint_forwards_raw_bytes(fake: FakeNgrok) -> None:
    server, stop = start_echo(PlainEchoHandler)
    try:
        cfg = fake.pyngrok_config()
        url = str(ngrok.connect(str(server.port), proto="tcp", pyngrok_config=cfg).public_url)
        assert url.startswith("tcp://0.tcp.ngrok.localhost:")
        address, port, _ = public_address(url)
        with socket.create_connection((address, port), timeout=5) as sock:
            payload = bytes(range(256)) * 64
            sock.sendall(payload)
            assert recv_exactly(sock, len(payload)) == payload
    finally:
        stop()


def test_sigkill_leaves_the_url_answering_offline(fake: FakeNgrok, upstream: RecordingServer) -> None:
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=cfg).public_url)
    assert http_request(url).status == 200
    pid = ngrok.get_ngrok_process(cfg).proc.pid

    os.kill(pid, signal.SIGKILL)

    wait_until(lambda: offline(url), timeout=5, message="the killed agent's URL to answer offline")
    wait_until(lambda: pid not in fake.live_agent_pids(), timeout=5, message="the agent to be dead")


@pytest.mark.parametrize(
    ("config_token", "argv_token", "code"),
    [
        (DEFAULT_TOKEN, "bad-token-1234", "ERR_NGROK_105"),  # --authtoken overrides the file
        ("revoked-token-5678", None, "ERR_NGROK_107"),
        (None, None, "ERR_NGROK_4018"),
    ],
)
def test_authentication_failures(fake: FakeNgrok, config_token: str | None, argv_token: str | None, code: str) -> None:
    cfg = fake.pyngrok_config(fake.write_config(config_token), auth_token=argv_token)

    with pytest.raises(PyngrokNgrokError) as failure:
        ngrok.get_ngrok_process(cfg)

    assert failure.value.ngrok_error_code == code
    assert str(failure.value.ngrok_error).endswith(code)
    quoted = argv_token or config_token
    if code != "ERR_NGROK_4018":
        assert f"Your authtoken: {quoted}" in str(failure.value.ngrok_error)  # as the real service does
    assert fake.wait_for_event("startup_failed", error_code=code)
    assert not process.is_process_running(cfg.ngrok_path)


def test_v2_config_file_is_read(fake: FakeNgrok) -> None:
    cfg = fake.pyngrok_config(fake.write_config("bad-v2-token", version="2"))
    with pytest.raises(PyngrokNgrokError) as failure:
        ngrok.get_ngrok_process(cfg)
    assert failure.value.ngrok_error_code == "ERR_NGROK_105"
    assert "bad-v2-token" in str(failure.value.ngrok_error)


@pytest.mark.parametrize("forced", ["ERR_NGROK_120", "727"])
def test_forced_startup_error(fake: FakeNgrok, forced: str) -> None:
    fake.set_control(startup_error=forced)
    with pytest.raises(PyngrokNgrokError) as failure:
        ngrok.get_ngrok_process(fake.pyngrok_config())
    assert failure.value.ngrok_error_code == f"ERR_NGROK_{forced.removeprefix('ERR_NGROK_')}"


def test_second_agent_with_the_same_token_gets_108(fake: FakeNgrok) -> None:
    fake.set_control(agent_limit=1)  # the free plan's limit was 1 agent; today it is 3
    shared = fake.write_config(web_addr=None)  # the default 127.0.0.1:4040, then the next free ports
    first = fake.pyngrok_config(shared)
    first_api = str(ngrok.get_ngrok_process(first).api_url)
    second = fake.pyngrok_config(shared, ngrok_path=fake.add_binary("ngrok-second"))

    with pytest.raises(PyngrokNgrokError) as failure:
        ngrok.get_ngrok_process(second)
    assert failure.value.ngrok_error_code == "ERR_NGROK_108"

    other = fake.pyngrok_config(
        fake.write_config("other-token", web_addr=None, name="other.yml"), ngrok_path=fake.add_binary("ngrok-other")
    )
    other_api = str(ngrok.get_ngrok_process(other).api_url)
    ports = [int(api.rsplit(":", 1)[1]) for api in (first_api, other_api)]
    assert ports[0] != ports[1]
    assert min(ports) >= 4040
    assert all(api.startswith("http://127.0.0.1:") for api in (first_api, other_api))

    ngrok.kill(first)  # the session is free again
    assert ngrok.get_ngrok_process(second).api_url


def test_basic_auth_policy(fake: FakeNgrok, upstream: RecordingServer) -> None:
    policy = """
on_http_request:
  - actions:
      - type: rate-limit
        config: {name: only-accepted, algorithm: sliding_window, capacity: 10, rate: 60s, bucket_key: [conn.client_ip]}
      - type: basic-auth
        config:
          credentials: ["alice:correct-horse", "bob:battery-staple"]
"""
    fake.set_control(credit=True)  # rate-limit costs credit (ERR_NGROK_4026 without)
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, name="guarded", traffic_policy=policy, pyngrok_config=cfg).public_url)

    denied = http_request(url)
    assert denied.status == 401
    assert denied.headers["www-authenticate"] == 'Basic realm="ngrok"'
    assert http_request(url, headers={"Authorization": "Basic YWxpY2U6d3Jvbmc="}).status == 401
    assert upstream.requests == []

    allowed = http_request(url, headers={"Authorization": "Basic Ym9iOmJhdHRlcnktc3RhcGxl"})
    assert (allowed.status, allowed.body) == (200, b"hello from upstream")
    assert upstream.requests[0][1]["Authorization"] == "Basic Ym9iOmJhdHRlcnktc3RhcGxl"


def test_oauth_policy_redirects_to_the_identity_provider(fake: FakeNgrok, upstream: RecordingServer) -> None:
    policy = {"on_http_request": [{"actions": [{"type": "oauth", "config": {"provider": "google"}}]}]}
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, traffic_policy=policy, pyngrok_config=cfg).public_url)

    reply = http_request(url, "/lab")
    assert reply.status == 302
    assert reply.headers["location"].startswith("https://idp.ngrok.com/oauth2/google/")
    assert upstream.requests == []


@pytest.mark.parametrize(
    "policy",
    [
        {"on_http_request": [{"actions": [{"type": "custom-response"}]}]},
        {"on_http_request": [{"actions": [{"type": "basic-auth", "config": {"credentials": ["a:short"]}}]}]},
        "on_http_request: [",
    ],
)
def test_invalid_policy_is_refused(fake: FakeNgrok, upstream: RecordingServer, policy: Any) -> None:
    cfg = fake.pyngrok_config()
    with pytest.raises(PyngrokNgrokHTTPError) as failure:
        ngrok.connect(upstream.url, traffic_policy=policy, pyngrok_config=cfg)
    assert failure.value.status_code == 400
    assert error_body(failure.value)["error_code"] == 102


def test_upstream_down_gives_502(fake: FakeNgrok) -> None:
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(f"http://127.0.0.1:{free_port()}", pyngrok_config=cfg).public_url)

    reply = http_request(url)

    assert reply.status == 502
    assert "ERR_NGROK_8012" in reply.text
    assert reply.headers["ngrok-error-code"] == "ERR_NGROK_8012"


def test_duplicate_name_and_forced_endpoint_error(fake: FakeNgrok, upstream: RecordingServer) -> None:
    fake.set_control(dev_domain=False)  # several endpoints in one agent: random names, as on a paid plan
    cfg = fake.pyngrok_config()
    ngrok.connect(upstream.url, name="twice", pyngrok_config=cfg)
    with pytest.raises(PyngrokNgrokHTTPError) as duplicate:
        ngrok.connect(upstream.url, name="twice", pyngrok_config=cfg)
    assert (duplicate.value.status_code, error_body(duplicate.value)["error_code"]) == (400, 102)

    fake.set_control(endpoint_error="3200")
    with pytest.raises(PyngrokNgrokHTTPError) as forced:
        ngrok.connect(upstream.url, name="other", pyngrok_config=cfg)
    assert error_body(forced.value)["details"]["err"].endswith("ERR_NGROK_3200")
    fake.set_control(endpoint_error=None)
    assert ngrok.connect(upstream.url, name="other", pyngrok_config=cfg).public_url


def test_outage_keeps_the_same_url(fake: FakeNgrok, upstream: RecordingServer) -> None:
    logs: list[NgrokLog] = []
    cfg = fake.pyngrok_config(log_event_callback=logs.append)
    url = str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=cfg).public_url)
    api_url = ngrok.get_ngrok_process(cfg).api_url
    assert http_request(url).status == 200

    outage = fake.start_outage(1.0)
    fake.wait_for_event("outage_started", id=outage)
    offline = http_request(url)  # the edge answers for the offline endpoint, the port stays bound
    assert (offline.status, offline.headers["ngrok-error-code"]) == (404, "ERR_NGROK_3200")
    assert ngrok.api_request(f"{api_url}/api/status")["status"] == "reconnecting"

    fake.wait_for_event("outage_ended", id=outage, timeout=10)
    assert wait_until(lambda: http_request(url).status == 200, message="forwarding to resume")
    assert [t.public_url for t in ngrok.get_tunnels(cfg)] == [url]
    errors = [log for log in logs if log.msg == "failed to reconnect session"]
    assert errors
    assert all(log.lvl == "ERROR" and log.err for log in errors)
    assert [log.msg for log in logs].count("client session established") == 2


def test_agent_started_during_an_outage_connects_when_it_ends(fake: FakeNgrok) -> None:
    fake.start_outage(0.6)  # the window starts when the first agent sees it
    cfg = fake.pyngrok_config()

    assert ngrok.get_ngrok_process(cfg).api_url
    messages = [log.msg for log in ngrok.get_ngrok_process(cfg).logs]
    assert messages.index("failed to reconnect session") < messages.index("client session established")


def test_reserved_domain_keeps_its_url_across_restarts(fake: FakeNgrok, upstream: RecordingServer) -> None:
    cfg = fake.pyngrok_config()
    first = ngrok.connect(upstream.url, name="jupyter", url="https://mydomain.ngrok.localhost", pyngrok_config=cfg)
    url = str(first.public_url)
    assert url.startswith("http://mydomain.ngrok.localhost:")

    # Another live agent (another account) cannot take the domain while it is online.
    rival = fake.pyngrok_config(
        fake.write_config("rival-token", name="rival.yml"), ngrok_path=fake.add_binary("ngrok-rival")
    )
    with pytest.raises(PyngrokNgrokHTTPError) as taken:
        ngrok.connect(upstream.url, name="jupyter", url="mydomain.ngrok.localhost", pyngrok_config=rival)
    assert taken.value.status_code == 400
    assert error_body(taken.value)["details"]["err"].endswith("ERR_NGROK_334")

    ngrok.kill(cfg)
    wait_until(lambda: offline(url), timeout=5, message="the killed agent's URL to answer offline")
    second = ngrok.connect(upstream.url, name="jupyter", url="https://mydomain.ngrok.localhost", pyngrok_config=cfg)

    assert second.public_url == url
    assert http_request(url).status == 200
    assert upstream.requests[-1][1]["Host"] == url.removeprefix("http://")


def test_hang_stops_api_and_forwarding_until_cleared(fake: FakeNgrok, upstream: RecordingServer) -> None:
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, pyngrok_config=cfg).public_url)
    api_url = ngrok.get_ngrok_process(cfg).api_url

    def api_times_out() -> bool:
        try:
            ngrok.api_request(f"{api_url}/api/endpoints", timeout=0.3)
        except PyngrokNgrokURLError:
            return True
        return False

    fake.set_control(hang=True)
    wait_until(api_times_out, message="the API to hang")
    address, port, host = public_address(url)
    with socket.create_connection((address, port), timeout=5) as sock:  # accepted...
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert select.select([sock], [], [], 0.3)[0] == []  # ...but never answered
        fake.set_control(hang=None)
        assert recv_until(sock, b"\r\n").startswith(b"HTTP/1.1 200")  # the held request goes through
    assert ngrok.api_request(f"{api_url}/api/endpoints")["endpoints"]


def test_sigterm_closes_listeners_and_exits_0(fake: FakeNgrok, upstream: RecordingServer) -> None:
    config = fake.write_config()
    # A scrubbed environment: the wrapper itself must carry the control dir.
    proc = subprocess.Popen(
        [str(fake.path), "start", "--none", "--log", "stdout", "--config", str(config)],
        env={},
        stdout=subprocess.PIPE,
    )
    try:
        lines = read_log_lines(proc, until="tunnel session started")
        web = next(log for log in lines if log.msg == "starting web service")
        assert web.addr is not None
        assert fake.wait_for_event("started", pid=proc.pid)["url"] == f"http://{web.addr}"
        endpoint = ngrok.api_request(
            f"http://{web.addr}/api/endpoints",
            method="POST",
            data={"name": "raw", "upstream": {"url": upstream.url}},
        )
        assert http_request(endpoint["url"]).status == 200

        proc.terminate()

        assert proc.wait(timeout=10) == 0
        wait_until(lambda: offline(endpoint["url"]), timeout=5, message="the stopped agent's URL to answer offline")
        assert fake.wait_for_event("exited", pid=proc.pid)["code"] == 0
        assert proc.pid not in fake.live_agent_pids()
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_agent_dies_of_sigpipe_when_its_log_reader_goes(fake: FakeNgrok, upstream: RecordingServer) -> None:
    proc = subprocess.Popen(
        [str(fake.path), "start", "--none", "--log", "stdout", "--config", str(fake.write_config())],
        stdout=subprocess.PIPE,
    )
    try:
        api_url = fake.wait_for_event("started", pid=proc.pid)["url"]
        assert proc.stdout is not None
        proc.stdout.close()  # as when the Python process that ran pyngrok is gone

        # The next log line (the API call's "start") hits the closed pipe, as with the Go binary.
        with contextlib.suppress(PyngrokNgrokURLError, OSError, http.client.HTTPException):
            ngrok.api_request(
                f"{api_url}/api/endpoints", method="POST", data={"name": "a", "upstream": {"url": upstream.url}}
            )

        assert proc.wait(timeout=10) == -signal.SIGPIPE
        assert fake.wait_for_event("exited", pid=proc.pid)["reason"] == "sigpipe"
    finally:
        proc.kill()
        proc.wait()


def test_kill_all_finds_agents_before_they_register(fake: FakeNgrok) -> None:
    procs = [
        subprocess.Popen([str(fake.path), "start", "--none", "--log", "false", "--config", str(fake.write_config())])
        for _ in range(2)
    ]
    try:
        fake.kill_all()  # right away: one may still be the wrapper shell, neither has a record yet

        assert fake.live_agent_pids() == []
        assert [p.wait(timeout=5) for p in procs] == [-signal.SIGKILL] * 2
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_zombie_agents_are_not_live(fake: FakeNgrok) -> None:
    proc = subprocess.Popen([str(fake.path), "start", "--none", "--log", "false", "--config", str(fake.write_config())])
    try:
        wait_until(lambda: proc.pid in fake.live_agent_pids(), message="the agent to run")
        os.kill(proc.pid, signal.SIGKILL)
        # Not reaped: the process is a zombie until wait(); it must not count as alive.
        wait_until(lambda: proc.pid not in fake.live_agent_pids(), message="the zombie to be ignored")
        assert proc.poll() == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


def read_log_lines(proc: subprocess.Popen[bytes], *, until: str, timeout: float = 10.0) -> list[NgrokLog]:
    """Parse the agent's stdout with pyngrok's own parser until a message appears."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    logs: list[NgrokLog] = []

    def line_arrived() -> bool:
        nonlocal buffer
        if select.select([fd], [], [], 0.05)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, "the agent closed its stdout"
            buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            logs.append(NgrokLog(line.decode()))
        return any(log.msg == until for log in logs)

    wait_until(line_arrived, timeout=timeout, interval=0, message=f"log line {until!r}")
    assert all(log.t and log.lvl == "INFO" for log in logs)
    return logs


# --------------------------------------------------------------------------- today's ngrok (facts.md section)

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def test_dev_domain_is_the_same_url_after_a_restart_and_belongs_to_the_token(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=cfg).public_url)
    assert re.fullmatch(PUBLIC_URL, url)
    assert http_request(url).status == 200

    ngrok.kill(cfg)  # SIGKILL; the default stale window is 0 s
    again = fake.pyngrok_config(Path(str(cfg.config_path)))
    assert str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=again).public_url) == url

    other = fake.pyngrok_config(fake.write_config("other-token", name="other.yml"), ngrok_path=fake.add_binary("o"))
    other_url = str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=other).public_url)
    assert re.fullmatch(PUBLIC_URL, other_url)
    assert other_url.split(":")[1] != url.split(":")[1], "another account has another dev domain"


def test_a_second_agent_asking_for_the_online_dev_domain_gets_334(fake: FakeNgrok, upstream: RecordingServer) -> None:
    shared = fake.write_config()
    first = fake.pyngrok_config(shared)
    url = str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=first).public_url)
    second = fake.pyngrok_config(shared, ngrok_path=fake.add_binary("ngrok-second"))  # 3 agents are allowed

    with pytest.raises(PyngrokNgrokHTTPError) as refused:
        ngrok.connect(upstream.url, name="jupyter", pooling_enabled=True, pyngrok_config=second)

    err = error_body(refused.value)["details"]["err"]
    assert err.endswith("ERR_NGROK_334")
    assert "is already online" in err
    assert "--pooling-enabled" in err
    assert http_request(url).status == 200, "the first agent keeps its URL"


def test_a_killed_agent_holds_its_url_for_the_stale_window_a_clean_stop_releases_it(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    fake.set_control(stale_session_seconds=3)
    config = fake.write_config()
    cfg = fake.pyngrok_config(config)
    url = str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=cfg).public_url)
    ngrok.kill(cfg)  # SIGKILL: the edge has not heard the session end

    replacement = fake.pyngrok_config(config, ngrok_path=fake.add_binary("ngrok-2"))
    with pytest.raises(PyngrokNgrokHTTPError) as refused:
        ngrok.connect(upstream.url, name="jupyter", pyngrok_config=replacement)
    assert error_body(refused.value)["details"]["err"].endswith("ERR_NGROK_334")

    def reopened() -> str | None:
        try:
            return str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=replacement).public_url)
        except PyngrokNgrokHTTPError:
            return None

    assert wait_until(reopened, timeout=15, interval=0.3, message="the stale session to time out") == url

    # A clean stop (SIGTERM) ends the session at the edge at once.
    proc = ngrok.get_ngrok_process(replacement).proc
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    third = fake.pyngrok_config(config, ngrok_path=fake.add_binary("ngrok-3"))
    assert str(ngrok.connect(upstream.url, name="jupyter", pyngrok_config=third).public_url) == url


def test_an_agent_older_than_3_30_has_no_endpoints_api(fake: FakeNgrok) -> None:
    # pyngrok 9's health check asks /api/endpoints; with an older agent it never passes, and as
    # pyngrok checks its startup deadline only between log lines, its start then waits for good
    # (remote_agent bounds that wait itself and checks the version first).
    fake.set_control(version="3.29.1")
    proc = subprocess.Popen(
        [str(fake.path), "start", "--none", "--log", "stdout", "--config", str(fake.write_config())],
        stdout=subprocess.PIPE,
    )
    try:
        lines = read_log_lines(proc, until="tunnel session started")
        web = next(log for log in lines if log.msg == "starting web service")
        with pytest.raises(PyngrokNgrokHTTPError) as missing:
            ngrok.api_request(f"http://{web.addr}/api/endpoints")
        assert missing.value.status_code == 404
        assert "tunnels" in ngrok.api_request(f"http://{web.addr}/api/tunnels")
        assert ngrok.api_request(f"http://{web.addr}/api/status")["agent_version"] == "3.29.1"
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_an_agent_too_old_for_the_account_gets_121_until_updated(fake: FakeNgrok) -> None:
    fake.set_control(version="3.30.0", min_agent_version="3.32.0")
    with pytest.raises(PyngrokNgrokError) as failure:
        ngrok.get_ngrok_process(fake.pyngrok_config())
    assert failure.value.ngrok_error_code == "ERR_NGROK_121"
    assert '"3.30.0" is too old' in str(failure.value.ngrok_error)

    update = subprocess.run([str(fake.path), "update"], capture_output=True, text=True, timeout=10, check=False)
    assert update.returncode == 0
    assert ngrok.get_version(fake.pyngrok_config())[0] == agent.LATEST_VERSION
    assert ngrok.get_ngrok_process(fake.pyngrok_config(ngrok_path=fake.add_binary("again"))).api_url


def test_a_rate_limit_without_credit_is_refused_with_4026(fake: FakeNgrok, upstream: RecordingServer) -> None:
    policy = {"on_http_request": [{"actions": [{"type": "rate-limit", "config": {"capacity": 5, "rate": "60s"}}]}]}
    cfg = fake.pyngrok_config()
    with pytest.raises(PyngrokNgrokHTTPError) as refused:
        ngrok.connect(upstream.url, name="limited", traffic_policy=json.dumps(policy), pyngrok_config=cfg)
    err = error_body(refused.value)["details"]["err"]
    assert err.endswith("ERR_NGROK_4026")
    assert "paid traffic policy" in err

    fake.set_control(credit=True)
    assert ngrok.connect(upstream.url, name="limited", traffic_policy=json.dumps(policy), pyngrok_config=cfg)


def test_status_has_legs_and_every_api_call_is_logged(fake: FakeNgrok) -> None:
    logs: list[NgrokLog] = []
    cfg = fake.pyngrok_config(log_event_callback=logs.append)
    api_url = str(ngrok.get_ngrok_process(cfg).api_url)
    before = len(logs)

    status = ngrok.api_request(f"{api_url}/api/status")

    assert status["status"] == "online"
    assert status["agent_version"] == agent.LATEST_VERSION
    leg = status["session"]["legs"][0]
    assert leg["region"] == "us"
    assert isinstance(leg["latency"], str)
    assert leg["latency"].endswith("ms")
    calls = wait_until(lambda: [log for log in logs[before:] if getattr(log, "pg", None) == "/api/status"])
    assert calls[0].msg == "start"
    assert calls[0].lvl == "INFO"
    ended = wait_until(lambda: [log for log in logs[before:] if log.msg == "end"])
    assert getattr(ended[0], "status", None) == "200"

    fake.set_control(api_log=False)
    count = len(logs)
    ngrok.api_request(f"{api_url}/api/status")
    assert len(logs) == count


def test_browser_warning_until_the_visitor_clicks_through(fake: FakeNgrok, upstream: RecordingServer) -> None:
    url = str(ngrok.connect(upstream.url, pyngrok_config=fake.pyngrok_config()).public_url)
    browser = {"User-Agent": BROWSER_UA, "Accept": "text/html"}

    page = http_request(url, "/tree", headers=browser)
    assert page.status == 200
    assert agent.WARNING_BUTTON in page.text
    assert upstream.requests == []
    action = re.search(r'form method="post" action="([^"]+)"', page.text)
    assert action is not None

    clicked = http_request(url, action[1], method="POST", headers=browser, body=b"")
    assert clicked.status == 302
    assert clicked.headers["location"] == "/tree"
    cookie = clicked.headers["set-cookie"].split(";")[0]

    assert http_request(url, "/tree", headers={**browser, "Cookie": cookie}).body == b"hello from upstream"
    assert http_request(url, headers={**browser, "ngrok-skip-browser-warning": "1"}).status == 200
    assert http_request(url).body == b"hello from upstream", "a script's User-Agent is not warned"


def test_every_request_gets_the_forwarded_headers_and_the_policys_header_actions(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    # ngrok appends the visitor's address and scheme (facts.md "Forwarded headers"); add-headers
    # appends too and remove-headers drops (ngrok's docs pages of those actions).
    policy = {
        "on_http_request": [
            {
                "actions": [
                    {"type": "remove-headers", "config": {"headers": ["x-drop"]}},
                    {"type": "add-headers", "config": {"headers": {"x-proof": "edge", "x-ip": "${conn.client_ip}"}}},
                ]
            }
        ]
    }
    cfg = fake.pyngrok_config()
    with pytest.raises(PyngrokNgrokHTTPError) as refused:  # remove-headers costs a traffic-policy unit
        ngrok.connect(upstream.url, name="headers", traffic_policy=policy, pyngrok_config=cfg)
    assert error_body(refused.value)["details"]["err"].endswith("ERR_NGROK_4026")
    fake.set_control(credit=True)
    url = str(ngrok.connect(upstream.url, name="headers", traffic_policy=policy, pyngrok_config=cfg).public_url)
    address, port, host = public_address(url)
    # Two requests on one keep-alive connection, from a loopback address of the test's choosing.
    conn = http.client.HTTPConnection(address, port, timeout=10, source_address=("127.0.0.3", 0))
    sent = {"Host": host, "X-Forwarded-For": "198.51.100.9", "X-Drop": "1", "X-Real-Ip": "192.0.2.1", "X-Proof": "own"}
    try:
        for path in ("/one", "/two"):
            conn.request("GET", path, headers=sent)
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 200
    finally:
        conn.close()
    assert [path for path, _ in upstream.requests] == ["/one", "/two"]
    for _, headers in upstream.requests:
        seen = {name.lower(): value for name, value in headers.items()}
        assert seen["x-forwarded-for"] == "198.51.100.9, 127.0.0.3"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-proof"] == "edge", "the edge's value is not the last one"
        assert seen["x-ip"] == "127.0.0.3"
        assert "x-drop" not in seen
        assert seen["x-real-ip"] == "192.0.2.1", "a client's X-Real-Ip passes through unchanged"
