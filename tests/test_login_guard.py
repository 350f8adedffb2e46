"""The login as an attacker on this server or on the internet finds it.

One real Jupyter (and the stand-in ngrok agent) serves the whole module. It starts with a
user's Jupyter config that tries to switch the login's protections off, as a tutorial's
might. Attacks from this server are plain HTTP to Jupyter's loopback port with chosen
headers, some run as another user (nobody); visitors from the internet come through the
stand-in agent's public port from chosen loopback source addresses (127.0.0.0/8), which
the agent reports in X-Forwarded-For as ngrok reports a visitor's address. Only the ngrok
cloud is replaced (tests/fakeagent).
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import attacker
import pytest
from conftest import PASSWORD, Sandbox
from fakeagent import FakeNgrok

WRONG = "not the password at all"
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike the test's own interpreter

# A tutorial's config that would turn off what the login relies on.
HOSTILE_CONFIG = """\
c.ServerApp.disable_check_xsrf = True
c.ServerApp.allow_origin = "*"
c.ServerApp.allow_credentials = True
c.ServerApp.tornado_settings = {"xsrf_cookies": False, "disable_check_xsrf": True}
c.IdentityProvider.login_handler_class = "jupyter_server.auth.login.LoginFormHandler"
c.PasswordIdentityProvider.login_handler_class = "jupyter_server.auth.login.LoginFormHandler"
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("guard")
    sandbox = Sandbox(root, FakeNgrok(root / "ngrok"))
    config_dir = sandbox.home / ".jupyter"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.py").write_text(HOSTILE_CONFIG)
    try:
        result = sandbox.run("serve", "--detach")
        assert result.returncode == 0, result.stderr
        yield sandbox
    finally:
        sandbox.cleanup()


@pytest.fixture(autouse=True)
def unlocked(box: Sandbox) -> Iterator[None]:
    """Each test starts and ends with no failed logins counted (`password --unlock`)."""
    assert box.run("password", "--unlock").returncode == 0
    yield
    assert box.run("password", "--unlock").returncode == 0


def jupyter_port(box: Sandbox) -> int:
    return int(box.jupyter_record()["port"])


def public(box: Sandbox) -> tuple[int, str]:
    """The stand-in agent's public port and the public Host header."""
    url = urlsplit(box.run("url").stdout.strip())
    assert url.port is not None
    return url.port, url.netloc


def as_nobody(port: int, attempts: list[dict[str, str]], password: str = WRONG) -> list[int]:
    """Login attempts straight to Jupyter's port by another local user; their statuses."""
    plan = {"port": port, "host": f"127.0.0.1:{port}", "password": password, "attempts": attempts}
    source = Path(attacker.__file__).read_text()
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", source, json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        user=NOBODY,
        cwd="/",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    statuses: list[int] = json.loads(done.stdout)
    return statuses


# -- 1. a forwarded address is believed only from the tunnel ----------------------------------


def test_rotating_x_forwarded_for_straight_to_jupyter_gets_no_fresh_tries(box: Sandbox) -> None:
    port = jupyter_port(box)
    attempts = [{"X-Forwarded-For": f"198.51.100.{i}", "X-Real-Ip": f"192.0.2.{i}"} for i in range(12)]
    statuses = as_nobody(port, attempts)
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}, f"a local user rotating forwarded-for headers was never slowed: {statuses}"


def test_failures_sent_with_the_owners_address_do_not_slow_the_owner_through_the_tunnel(box: Sandbox) -> None:
    owner_address = "127.0.0.5"  # where the owner's browser comes from, as `who` would show it
    # Any local user can read the endpoint's traffic policy, with the edge's proof, from the
    # agent's local API (it has no authentication), and send it along.
    api = box.tunnel_state()["api_url"]
    with urllib.request.urlopen(f"{api}/api/endpoints", timeout=5) as response:
        policy = json.load(response)["endpoints"][0]["traffic_policy"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    proof = policy["on_http_request"][0]["actions"][0]["config"]["headers"]
    forged = {"X-Forwarded-For": owner_address, **proof}
    statuses = as_nobody(jupyter_port(box), [{"X-Forwarded-For": owner_address}] * 4 + [forged] * 8)
    assert 429 in statuses
    port, host = public(box)
    assert attacker.login(port, host, PASSWORD, source=owner_address) == 302, "the owner was slowed by forgeries"


def test_a_visitors_own_forwarded_for_and_a_guessed_proof_change_nothing(box: Sandbox) -> None:
    port, host = public(box)
    guesser = "127.0.0.6"
    assert [attacker.login(port, host, WRONG, source=guesser) for _ in range(5)] == [401] * 5
    disguises = [
        {"X-Forwarded-For": "198.51.100.1"},
        {"X-Forwarded-For": "198.51.100.2", "X-Remote-Agent-Edge": "guessed"},
        {"X-Real-Ip": "198.51.100.3"},
    ]
    for headers in disguises:
        status = attacker.login(port, host, PASSWORD, source=guesser, headers=headers)
        assert status == 429, f"{headers} gave the guesser a fresh address"
    assert attacker.login(port, host, PASSWORD, source="127.0.0.8") == 302, "another visitor was slowed too"


def test_another_users_guesses_do_not_lock_the_owner_out_of_ssh_forwarding(box: Sandbox) -> None:
    port = jupyter_port(box)
    statuses = as_nobody(port, [{}] * 12)
    assert statuses[-1] == 429, statuses
    # What an `ssh -L` delivers: a loopback connection made by sshd as the owner's user.
    assert attacker.login(port, f"127.0.0.1:{port}", PASSWORD) == 302


# -- 2. a budget for all failures together; 4. links and passwords counted apart ---------------


def test_guesses_from_many_addresses_slow_every_login_until_unlock(box: Sandbox) -> None:
    port, host = public(box)
    session = attacker_session(port, host, "127.0.0.9")
    statuses = [attacker.login(port, host, WRONG, source=f"127.0.1.{i}") for i in range(1, 32)]
    assert statuses.count(401) == 30, statuses
    assert statuses[-1] == 429, "the 31st failure within a minute was not slowed"
    assert attacker.login(port, host, PASSWORD, source="127.0.0.10") == 429, "a new visitor was not slowed"
    status, _ = attacker.request(port, "GET", "/api/status", host, "127.0.0.9", session)
    assert status == 200, "an open session was refused during the brake"
    assert box.run("password", "--unlock").returncode == 0
    assert attacker.login(port, host, PASSWORD, source="127.0.0.10") == 302, "unlock did not clear the brake"


def test_a_valid_link_does_not_wipe_out_the_password_failures_of_its_address(box: Sandbox) -> None:
    port, host = public(box)
    source = "127.0.0.11"
    for round_ in range(2):
        assert [attacker.login(port, host, WRONG, source=source) for _ in range(2)] == [401] * 2
        link = box.run("share", "--json", "--name", f"ana{round_}")
        assert link.returncode == 0, link.stderr
        assert log_in_with_link(port, host, source, json.loads(link.stdout)["url"]), "the link did not log in"
    assert attacker.login(port, host, WRONG, source=source) == 401
    assert attacker.login(port, host, PASSWORD, source=source) == 429, "links in between reset the password count"


def attacker_session(port: int, host: str, source: str) -> dict[str, str]:
    """Log in with the password; the headers that carry the session on later requests."""
    _, got = attacker.request(port, "GET", "/login", host, source)
    xsrf = re.search(r"_xsrf=([^;]+)", got["set-cookie"])
    assert xsrf
    body = urlencode({"password": PASSWORD, "_xsrf": xsrf[1]})
    status, got = attacker.request(port, "POST", "/login", host, source, {"Cookie": f"_xsrf={xsrf[1]}"}, body)
    assert status == 302
    cookies = [c.split(";", 1)[0] for c in got["set-cookie"].split("\n")]
    return {"Cookie": "; ".join([f"_xsrf={xsrf[1]}", *cookies])}


def log_in_with_link(port: int, host: str, source: str, url: str) -> bool:
    """Open a share link and press its join button as a browser would; True when it logged in."""
    parts = urlsplit(url)
    token = parse_qs(parts.query)["token"][0]
    status, got = attacker.request(port, "GET", f"/login?{urlencode({'token': token, 'next': '/tree'})}", host, source)
    xsrf = re.search(r"_xsrf=([^;]+)", got.get("set-cookie", ""))
    if status != 200 or xsrf is None:
        return False
    body = urlencode({"token": token, "_xsrf": xsrf[1]})
    status, got = attacker.request(port, "POST", "/login/join", host, source, {"Cookie": f"_xsrf={xsrf[1]}"}, body)
    return status == 302 and "set-cookie" in got


# -- 3. password checks run beside the event loop ----------------------------------------------


def test_jupyter_answers_while_guesses_are_being_checked(box: Sandbox) -> None:
    port = jupyter_port(box)
    host = f"127.0.0.1:{port}"
    _, got = attacker.request(port, "GET", "/login", host)
    xsrf = re.search(r"_xsrf=([^;]+)", got["set-cookie"])
    assert xsrf
    body = urlencode({"password": WRONG, "_xsrf": xsrf[1]}).encode()
    post = (
        f"POST /login HTTP/1.1\r\nHost: {host}\r\nCookie: _xsrf={xsrf[1]}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    probe = f"GET /api HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    # Every guess is on the wire before the probe is sent; then see in which order answers come.
    guesses = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    for sock in guesses:
        sock.sendall(post)
    ping = socket.create_connection(("127.0.0.1", port))
    ping.sendall(probe)
    order = answers_in_order({**{s: f"guess {i}" for i, s in enumerate(guesses)}, ping: "probe"})
    statuses = dict(order)
    checked = [name for name, status in order if name != "probe" and status == 401]
    assert statuses["probe"] == 200
    assert checked, f"no guess was checked at all: {order}"
    probe_at = [name for name, _ in order].index("probe")
    assert probe_at < [name for name, _ in order].index(checked[-1]), f"/api waited for every password check: {order}"


def answers_in_order(sockets: dict[socket.socket, str]) -> list[tuple[str, int]]:
    """(name, HTTP status) of each socket, in the order their answers began to arrive."""
    selector = selectors.DefaultSelector()
    for sock, name in sockets.items():
        sock.settimeout(60)
        selector.register(sock, selectors.EVENT_READ, name)
    order: list[tuple[str, int]] = []
    while len(order) < len(sockets):
        events = selector.select(timeout=60)
        assert events, f"no answer within a minute; so far {order}"
        for key, _ in events:
            fileobj = key.fileobj
            assert isinstance(fileobj, socket.socket)
            sock = fileobj
            head = sock.recv(64)
            selector.unregister(sock)
            sock.close()
            order.append((str(key.data), int(head.split()[1]) if head else 0))
    return order


# -- 11. Host names, client headers, fixed settings ------------------------------------------------


def test_a_foreign_host_name_is_refused_as_dns_rebinding(box: Sandbox) -> None:
    port = jupyter_port(box)
    laptop = 12345  # a rebinding page reaches the laptop's `ssh -L` port under its own name
    for method, path in (("GET", "/login"), ("POST", "/login"), ("GET", "/api/contents")):
        body = "" if method == "POST" else None
        status, _ = attacker.request(port, method, path, f"rebind.attacker.example:{laptop}", body=body)
        assert status == 403, f"{method} {path} for a foreign Host answered {status}"
    assert attacker.request(port, "GET", "/login", f"localhost:{laptop}")[0] == 200
    assert attacker.request(port, "GET", "/login", f"127.0.0.1:{port}")[0] == 200
    public_port, host = public(box)
    assert attacker.request(public_port, "GET", "/login", host)[0] == 200, "the public host was refused"


def test_a_visitors_x_scheme_and_x_real_ip_are_ignored(box: Sandbox) -> None:
    port, host = public(box)
    spoofed = "198.51.100.77"
    headers = {"X-Scheme": "https", "X-Forwarded-Proto": "https", "X-Real-Ip": spoofed}
    _, got = attacker.request(port, "GET", "/login", host, "127.0.0.12", headers)
    xsrf = re.search(r"_xsrf=([^;]+)", got["set-cookie"])
    assert xsrf
    body = urlencode({"password": PASSWORD, "_xsrf": xsrf[1]})
    status, got = attacker.request(
        port, "POST", "/login", host, "127.0.0.12", {**headers, "Cookie": f"_xsrf={xsrf[1]}"}, body
    )
    assert status == 302
    login_cookie = [c for c in got["set-cookie"].split("\n") if not c.startswith("_xsrf=")]
    assert login_cookie
    # The edge says the visitor used http (the stand-in's public side): a Secure cookie would never come back.
    assert all("secure" not in c.lower().split("; ") for c in login_cookie), login_cookie
    logs = box.run("logs", "-n", "400").stdout
    assert "127.0.0.12" in logs, "Jupyter's log does not show the visitor's address"
    assert spoofed not in logs, "Jupyter's log shows the address the visitor made up"


def test_a_users_jupyter_config_cannot_switch_the_protections_off(box: Sandbox) -> None:
    port = jupyter_port(box)
    host = f"127.0.0.1:{port}"
    session = attacker_session(port, host, "127.0.0.1")
    # A page on another site posting with the owner's cookie: refused for its origin, and without
    # the XSRF token even with no origin at all.
    cross_site = {**session, "Origin": "http://evil.example", "Content-Type": "application/json"}
    status, _ = attacker.request(port, "POST", "/api/contents", host, headers=cross_site, body="{}")
    assert status in (403, 404), f"a cross-site POST was accepted ({status})"
    no_token = {**session, "Content-Type": "application/json"}
    status, _ = attacker.request(port, "POST", "/api/contents", host, headers=no_token, body="{}")
    assert status == 403, f"a POST without the XSRF token was accepted ({status})"
    status, got = attacker.request(port, "GET", "/api/contents", host, headers=cross_site)
    assert "access-control-allow-origin" not in got, "another site may read the owner's files"
    # The login brake is still in front of the password.
    assert [attacker.login(port, host, WRONG, source="127.0.0.13") for _ in range(6)][-1] == 429
    doctor = box.run("doctor")
    for key in ("ServerApp.disable_check_xsrf", "ServerApp.allow_origin", "IdentityProvider.login_handler_class"):
        assert key in doctor.stdout, f"doctor does not name {key}:\n{doctor.stdout}"
