"""Share links, a password changed without a restart, and the brake on password guessing.

One real Jupyter (and the stand-in ngrok agent) serves the whole module; each test makes
its own links. Only the ngrok cloud is replaced (tests/fakeagent).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attacker
import pytest
import requests
import websocket
from browser import chromium, new_notebook, run_in_new_cell, wait_for_output
from conftest import PASSWORD, Sandbox, descendants, pid_alive, serving_sandbox, wait_until
from jupyter_client import JupyterClient
from playwright.sync_api import Page

from remote_agent.jupyter import process as jupyter_process

WRONG = "not the password at all"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from serving_sandbox(tmp_path_factory, "share")


# Every link secret a test saw, for the at-rest check at the end of the module.
SEEN_SECRETS: list[str] = []


def make_link(box: Sandbox, *args: str) -> dict[str, Any]:
    result = box.run("share", "--json", *args)
    assert result.returncode == 0, result.stderr
    link: dict[str, Any] = json.loads(result.stdout)
    SEEN_SECRETS.append(parse_qs(urlsplit(link["url"]).query)["token"][0])
    return link


def public_url(box: Sandbox) -> str:
    return box.run("url").stdout.strip()


def open_link(url: str, client: JupyterClient | None = None) -> tuple[JupyterClient, requests.Response]:
    """GET the link, as a browser or a chat's link previewer does."""
    client = client or JupyterClient(url)
    parts = urlsplit(url)
    return client, client.get(f"{parts.path}?{parts.query}")


def press_join(client: JupyterClient, page: requests.Response) -> requests.Response:
    """Post the join page's form as the browser does when its button is pressed."""
    action = html.unescape(re.findall(r'<form method="post" action="([^"]+)"', page.text)[0])
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    return client.post(action, data={k: html.unescape(v) for k, v in fields.items()})


def follow_link(url: str) -> tuple[JupyterClient, Any]:
    """Open the link and press Join; the client keeps the session cookie (and the page's _xsrf one).

    The answer is the join's (302 on success), or the link page's when it showed no button.
    """
    client, page = open_link(url)
    if page.status_code != 200:
        return client, page
    answer = press_join(client, page)
    if answer.status_code == 302:
        client.get("/tree")  # where the redirect lands
    return client, answer


def listed(box: Sandbox, name: str) -> dict[str, Any]:
    rows = json.loads(box.run("share", "--list", "--json").stdout)["shares"]
    row: dict[str, Any] = next(s for s in rows if s["name"] == name)
    return row


def jupyter_pid(box: Sandbox) -> int:
    return int(box.jupyter_record()["pid"])


def open_socket(client: JupyterClient, path: str) -> websocket.WebSocket:
    """A websocket with the client's session cookie, as the notebook page opens one."""
    base_host = client.base.split("://", 1)[1]
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.session.cookies)
    return websocket.create_connection(
        f"ws://{base_host}{path}",
        host=client.host,
        origin=f"http://{client.host}",
        cookie=cookies,
        header=[f"X-XSRFToken: {client.xsrf()}"],
        timeout=30,
    )


def next_from_server(ws: websocket.WebSocket, seconds: float, wanted: int) -> str:
    """What the server does next on this websocket: "wanted" (that control frame), "closed" or "quiet".

    Kernel messages meanwhile are read and dropped.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            opcode, _ = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return "closed"
        if opcode == wanted:
            return "wanted"
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return "closed"
    return "quiet"


def closed_by_server(ws: websocket.WebSocket) -> bool:
    """Read (and drop) whatever the server sends until it closes the socket; False on a quiet minute."""
    return next_from_server(ws, 60, websocket.ABNF.OPCODE_CLOSE) != "quiet"


# -- a link logs in; the owner's password still does ----------------------------------------


def test_a_link_logs_in_through_the_public_url_and_leaves_no_secret_in_the_address_bar(box: Sandbox) -> None:
    link = make_link(box, "--name", "ana")
    assert link["name"] == "ana"
    assert link["url"].startswith(public_url(box) + "/login?")
    client, answer = follow_link(link["url"])
    assert answer.status_code == 302
    assert "token" not in answer.headers["Location"], "the secret stays in the address bar"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/api/status").status_code == 200
    me = client.get("/api/me").json()["identity"]
    assert me["display_name"] == "ana (share link)"
    kernel = client.start_kernel()
    assert client.execute(kernel, "print(6 * 7)").strip() == "42"

    owner = JupyterClient(public_url(box))
    assert owner.login(PASSWORD).status_code == 302, "the owner's password no longer works"
    assert owner.get("/api/status").status_code == 200
    # A link's holder cannot turn their login into a new owner's password.
    secret = SEEN_SECRETS[-1]
    config = box.home / ".jupyter" / "jupyter_server_config.json"
    before = config.read_text()
    attempt = JupyterClient(public_url(box))
    attempt.get("/login")
    form = {"password": secret, "new_password": "taken over!", "_xsrf": attempt.xsrf()}
    assert attempt.post("/login", data=form).status_code == 401
    assert config.read_text() == before
    assert JupyterClient(public_url(box)).login("taken over!").status_code == 401


def test_share_says_what_a_collaborator_can_do_and_lists_links(box: Sandbox) -> None:
    result = box.run("share", "--name", "carla", "--expires", "30m")
    assert result.returncode == 0, result.stderr
    SEEN_SECRETS.append(re.findall(r"token=([\w-]+)", result.stdout)[0])
    assert "valid for 30 minutes" in result.stdout
    assert "for one browser" in result.stdout
    assert "can run any code on this server as user" in result.stdout
    assert "cloud credentials" in result.stdout
    assert "share --revoke carla" in result.stdout
    assert result.stderr == "", "a Jupyter of this version needs no warning"
    carla = listed(box, "carla")
    assert carla["revoked"] is False
    assert set(carla) == {
        "name",
        "created_at",
        "expires_at",
        "revoked",
        "uses",
        "max_uses",
        "last_used_at",
        "last_used_from",
    }
    assert (carla["uses"], carla["max_uses"], carla["last_used_at"], carla["last_used_from"]) == (0, 1, None, None)
    table = box.run("share", "--list").stdout
    assert re.search(r"^carla\s.*\s0/1\s+never\s+active$", table, re.M), table


def test_share_json_keeps_stdout_for_json_and_still_warns_on_stderr(box: Sandbox) -> None:
    result = box.run("share", "--json", "--name", "jo", "--uses", "3")
    assert result.returncode == 0, result.stderr
    link = json.loads(result.stdout)
    SEEN_SECRETS.append(parse_qs(urlsplit(link["url"]).query)["token"][0])
    assert set(link) == {"name", "url", "expires_at", "max_uses"}
    assert (link["name"], link["max_uses"]) == ("jo", 3)
    assert "can run any code on this server as user" in result.stderr
    assert "share --revoke jo" in result.stderr
    assert link["url"] not in result.stderr
    assert box.run("share", "--uses", "0").returncode == 2


# -- opening a link: a page with a button; each press of it is a use ------------------------------------


def test_opening_a_link_logs_no_one_in_and_uses_nothing_until_the_button_is_pressed(box: Sandbox) -> None:
    link = make_link(box, "--name", "kim")
    # A chat's link previewer fetches the link (twice, say): it gets a page, no session, no use.
    previewer, page = open_link(link["url"])
    assert page.status_code == 200
    assert re.search(r"Join \S+'s Jupyter as kim", page.text), page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in page.headers["Cache-Control"]
    assert open_link(link["url"], previewer)[1].status_code == 200
    assert previewer.get("/api/status").status_code == 403, "fetching the link logged the previewer in"
    assert previewer.get("/tree").status_code == 302, "fetching the link logged the previewer in"
    assert listed(box, "kim")["uses"] == 0

    # The collaborator's browser presses Join: logged in, one use, when and from where.
    kim, answer = follow_link(link["url"])
    assert answer.status_code == 302
    assert kim.get("/api/status").status_code == 200
    row = listed(box, "kim")
    assert (row["uses"], row["max_uses"]) == (1, 1)
    assert row["last_used_at"] is not None
    assert "127.0.0.1" in row["last_used_from"], "not this test's (loopback) address"
    assert re.search(r"^kim\s.*\s1/1\s.*\sused up$", box.run("share", "--list").stdout, re.M)

    # A second browser gets a page saying the link was used up, and no session.
    again, refused = follow_link(link["url"])
    assert refused.status_code == 403
    assert "used up" in refused.text
    assert again.get("/api/status").status_code == 403
    assert listed(box, "kim")["uses"] == 1
    assert kim.get("/api/status").status_code == 200, "the first browser's session ended"
    # The collaborator opens the link again (a bookmark): straight in, no second use.
    reopened = open_link(link["url"], kim)[1]
    assert reopened.status_code == 302
    assert "token" not in reopened.headers["Location"]
    assert listed(box, "kim")["uses"] == 1


def test_the_join_button_needs_the_pages_xsrf_cookie_and_a_forged_post_uses_nothing(box: Sandbox) -> None:
    link = make_link(box, "--name", "lee")
    token = parse_qs(urlsplit(link["url"]).query)["token"][0]
    # Another site's page posting the secret (a login CSRF) has no _xsrf of this origin.
    stranger = JupyterClient(link["url"])
    assert stranger.post("/login/join", data={"token": token}).status_code == 403
    # A page of another origin that holds a matching _xsrf pair is refused by its Origin.
    cross, _ = open_link(link["url"])
    fields = {"token": token, "_xsrf": cross.xsrf()}
    assert cross.post("/login/join", data=fields, headers={"Origin": "https://evil.example"}).status_code in (403, 404)
    assert listed(box, "lee")["uses"] == 0
    # The join page itself asks for no referrer, so Chromium posts its form with `Origin: null`.
    answer = cross.post("/login/join", data=fields, headers={"Origin": "null"})
    assert answer.status_code == 302
    assert cross.get("/api/status").status_code == 200
    assert listed(box, "lee")["uses"] == 1


def test_two_browsers_pressing_join_at_once_get_no_more_uses_than_the_link_has(box: Sandbox) -> None:
    link = make_link(box, "--name", "max", "--uses", "2")
    browsers = [open_link(link["url"]) for _ in range(5)]
    assert all(page.status_code == 200 for _, page in browsers)
    answers: list[int] = []
    start = threading.Barrier(len(browsers))

    def press(client: JupyterClient, page: requests.Response) -> None:
        start.wait()
        answers.append(press_join(client, page).status_code)

    threads = [threading.Thread(target=press, args=pair) for pair in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [302, 302, 403, 403, 403]
    assert listed(box, "max")["uses"] == 2


def test_login_cookies_are_same_site_lax_and_a_links_ends_with_the_link(box: Sandbox) -> None:
    owner = JupyterClient(public_url(box))
    answer = owner.login(PASSWORD)
    assert answer.status_code == 302
    owner_cookie = next(c for c in answer.raw.headers.getlist("Set-Cookie") if c.startswith("username-"))
    assert "samesite=lax" in owner_cookie.lower(), owner_cookie

    link = make_link(box, "--name", "nia", "--expires", "30m")
    client, page = open_link(link["url"])
    joined = press_join(client, page)
    assert joined.status_code == 302
    link_cookie = next(c for c in joined.raw.headers.getlist("Set-Cookie") if c.startswith("username-"))
    assert "samesite=lax" in link_cookie.lower(), link_cookie
    cookie = next(c for c in client.session.cookies if c.name.startswith("username-"))
    assert cookie.expires is not None
    assert cookie.expires <= datetime.fromisoformat(link["expires_at"]).timestamp(), "the cookie outlives the link"


# -- revoke and expiry --------------------------------------------------------------------------


def test_revoke_refuses_the_link_its_session_and_websockets_while_the_owner_carries_on(box: Sandbox) -> None:
    pid = jupyter_pid(box)
    owner = JupyterClient(public_url(box))
    assert owner.login(PASSWORD).status_code == 302
    owner_kernel = owner.start_kernel()
    owner.execute(owner_kernel, "x = 41")

    # A notebook the owner has open: a collaborator who opens it too joins the owner's kernel.
    shared = {"path": "shared.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    owner_session = owner.api("POST", "/api/sessions", shared).json()

    link = make_link(box, "--name", "bo")
    bo, answer = follow_link(link["url"])
    assert answer.status_code == 302
    assert bo.api("POST", "/api/sessions", shared).json()["kernel"]["id"] == owner_session["kernel"]["id"]
    bo_kernel = bo.start_kernel()
    session = {"path": "bo.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    bo_session_kernel = bo.api("POST", "/api/sessions", session).json()["kernel"]["id"]
    # A job started from a cell in a session of its own (as `nohup ... &` or a server would be).
    started = bo.execute(
        bo_kernel,
        "import subprocess, sys\n"
        "job = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "print(job.pid)",
    )
    job = int(started.strip())
    kernel_socket = open_socket(bo, f"/api/kernels/{bo_kernel}/channels?session_id={uuid.uuid4().hex}")
    terminal = bo.api("POST", "/api/terminals").json()["name"]
    terminal_socket = open_socket(bo, f"/terminals/websocket/{terminal}")
    try:
        revoked = box.run("share", "--revoke", "bo")
        assert revoked.returncode == 0, revoked.stderr
        assert "refused from now on" in revoked.stdout
        assert closed_by_server(kernel_socket), "the collaborator's kernel websocket stayed open"
        assert closed_by_server(terminal_socket), "the collaborator's terminal stayed open"
        for path in ("/api/status", "/tree"):
            assert bo.get(path).status_code == 403, f"the revoked session still gets {path}"
        assert follow_link(link["url"])[1].status_code == 403
        assert "revoked" in follow_link(link["url"])[1].text

        # What they started is shut down, and `--revoke` says so; what escaped is named by pid.
        assert "Shut down what they started: 2 kernel(s), 1 terminal(s)." in revoked.stdout, revoked.stdout
        kernels = [k["id"] for k in owner.api("GET", "/api/kernels").json()]
        assert bo_kernel not in kernels, "the kernel the collaborator started still runs"
        assert bo_session_kernel not in kernels, "the notebook kernel the collaborator started still runs"
        assert terminal not in [t["name"] for t in owner.api("GET", "/api/terminals").json()]
        assert re.search(rf"^\s+{job}\s.*time\.sleep\(600\)", revoked.stdout, re.M), revoked.stdout
        assert "code they ran ran as you" in revoked.stdout
        for secret_to_rotate in ("ngrok authtoken", "NGROK_BASIC_AUTH", "REMOTE_AGENT_WEBHOOK", "Jupyter password"):
            assert secret_to_rotate in revoked.stdout

        assert jupyter_pid(box) == pid, "Jupyter was restarted"
        assert owner.execute(owner_kernel, "print(x + 1)").strip() == "42", "the owner's kernel lost its state"
        assert owner_session["kernel"]["id"] in kernels, "the owner's notebook kernel that they joined was shut down"
        assert box.run("share", "--revoke", "bo").returncode == 0  # twice: says it had ended already
        assert listed(box, "bo")["revoked"] is True
    finally:
        if pid_alive(job):
            os.kill(job, signal.SIGKILL)


def test_an_expired_link_and_its_session_are_refused(box: Sandbox) -> None:
    link = make_link(box, "--name", "dora", "--expires", "4s")
    dora, answer = follow_link(link["url"])
    assert answer.status_code == 302, "the link did not log in before it expired"
    assert dora.get("/api/status").status_code == 200
    wait_until(lambda: dora.get("/api/status").status_code == 403, 60, "the session to end with its link")
    again = follow_link(link["url"])[1]
    assert again.status_code == 403
    assert "expired" in again.text


def click_through_the_warning_page(page: Page, then: str) -> None:
    """ngrok's free plan first shows browsers a warning page with a "Visit Site" button (newer
    pages say "Visit"); the stand-in agent shows it when it is set to. Click it if it is there,
    before the page that shows `then`."""
    visit = "button:has-text('Visit'), a:has-text('Visit'), input[type=submit][value^='Visit']"
    page.wait_for_selector(f"{then}, {visit}")
    button = page.locator(visit)
    if button.count():
        button.first.click()


def test_a_collaborator_opens_the_link_in_a_browser_and_revoke_cuts_them_off(
    box: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    link = make_link(box, "--name", "browser")
    with chromium(tmp_path / "chromium-profile", request.node.name) as browser:
        tree = browser.new_page()
        tree.goto(link["url"])
        click_through_the_warning_page(tree, "#join")
        tree.wait_for_selector("text=Join")
        assert re.search(r"Join \S+'s Jupyter as browser", tree.content())
        browser.shot(tree, "join-page")
        tree.click("#join")
        tree.wait_for_selector(".jp-DirListing-content:visible")
        assert "/tree" in tree.url
        assert "token" not in tree.url, "the secret stays in the address bar"
        browser.shot(tree, "file-list-through-the-link")
        notebook = new_notebook(tree)
        cell = run_in_new_cell(notebook, "print('from the link', 6 * 7)")
        wait_for_output(notebook, cell, "from the link 42", timeout=60)
        browser.shot(notebook, "cell-output")

        assert box.run("share", "--revoke", "browser").returncode == 0
        log = box.state_dir / "jupyter.log"
        closed = re.compile(r"Share link 'browser' ended: closed ([1-9]\d*) kernel/terminal")
        wait_until(lambda: closed.search(log.read_text()), 30, "the notebook's kernel connection to be closed")
        notebook.reload()
        notebook.wait_for_selector("text=revoked")
        browser.shot(notebook, "refused-after-revoke")


# -- the owner's password ---------------------------------------------------------------------------


def still_open(ws: websocket.WebSocket) -> bool:
    """The server answers a ping on this websocket (kernel messages before the pong are dropped)."""
    ws.ping("still there?")
    return next_from_server(ws, 30, websocket.ABNF.OPCODE_PONG) == "wanted"


def test_a_changed_password_works_at_once_without_a_restart(box: Sandbox) -> None:
    pid = jupyter_pid(box)
    before = JupyterClient(public_url(box))
    assert before.login(PASSWORD).status_code == 302
    owner_kernel = before.start_kernel()
    owner_socket = open_socket(before, f"/api/kernels/{owner_kernel}/channels?session_id={uuid.uuid4().hex}")
    link = make_link(box, "--name", "eve")
    eve = follow_link(link["url"])[0]
    eve_kernel = eve.start_kernel()
    eve_socket = open_socket(eve, f"/api/kernels/{eve_kernel}/channels?session_id={uuid.uuid4().hex}")

    new = "a brand new password 2"
    changed = box.run("password", "--stdin", input=new + "\n")
    assert changed.returncode == 0, changed.stderr
    assert "takes it at once" in changed.stdout
    try:
        assert JupyterClient(public_url(box)).login(new).status_code == 302
        assert JupyterClient(public_url(box)).login(PASSWORD).status_code == 401
        assert before.get("/api/status").status_code == 403, "a session of the old password goes on"
        assert closed_by_server(owner_socket), "a kernel connection opened with the old password stays open"
        assert eve.get("/api/status").status_code == 200, "a share link's session ended with the password change"
        assert still_open(eve_socket), "the password change closed a share link's kernel connection"
        assert jupyter_pid(box) == pid
    finally:
        assert box.run("password", "--stdin", input=PASSWORD + "\n").returncode == 0
    assert JupyterClient(public_url(box)).login(PASSWORD).status_code == 302


def test_serve_with_a_new_password_applies_it_at_once(box: Sandbox) -> None:
    pid = jupyter_pid(box)
    new = "another new password 3"
    again = box.run("serve", "--detach", JUPYTER_PASSWORD=new)
    try:
        assert again.returncode == 0, again.stderr
        assert "the running Jupyter takes it at once" in again.stderr
        assert JupyterClient(public_url(box)).login(new).status_code == 302
        assert jupyter_pid(box) == pid
    finally:
        assert box.run("password", "--stdin", input=PASSWORD + "\n").returncode == 0


# -- the brake on guessing --------------------------------------------------------------------------


def test_repeated_wrong_passwords_from_one_address_are_slowed(box: Sandbox) -> None:
    # The stand-in agent reports each visitor's address as ngrok does (X-Forwarded-For);
    # visitors differ here by their loopback source address.
    url = urlsplit(public_url(box))
    assert url.port is not None
    port, host = url.port, url.netloc
    guesser = "127.0.0.71"
    answers = [attacker.login(port, host, WRONG, source=guesser) for _ in range(5)]
    assert answers == [401] * 5
    assert attacker.login(port, host, PASSWORD, source=guesser) == 429, "the sixth try in a row was not slowed"
    link = make_link(box, "--name", "fred")
    parts = urlsplit(link["url"])
    status, headers = attacker.request(port, "GET", f"{parts.path}?{parts.query}", host, guesser)
    assert status == 429, "links are not slowed"
    assert int(headers["retry-after"]) > 0
    assert attacker.login(port, host, PASSWORD, source="127.0.0.72") == 302, "another address was slowed too"
    # A client cannot pick its own address: the edge's entry is the last one.
    spoofed = {"X-Forwarded-For": "198.51.100.1", "X-Real-Ip": "198.51.100.2"}
    assert attacker.login(port, host, PASSWORD, source=guesser, headers=spoofed) == 429


def test_wrong_passwords_through_an_ssh_forward_are_slowed_too_and_the_wait_ends(box: Sandbox) -> None:
    # What `ssh -L` delivers: a loopback connection to Jupyter's port, no forwarded header.
    local = f"http://127.0.0.1:{box.jupyter_record()['port']}"
    guesser = JupyterClient(local)
    assert [guesser.login(WRONG).status_code for _ in range(5)] == [401] * 5
    slowed = guesser.login(PASSWORD)
    assert slowed.status_code == 429
    wait = int(slowed.headers["Retry-After"])
    assert 0 < wait <= 5
    # Once the wait is over, the right password gets in again (and clears the count).
    owner = JupyterClient(local)
    wait_until(lambda: owner.login(PASSWORD).status_code == 302, 60, "the wait to end", interval=0.5)
    assert owner.get("/api/status").status_code == 200


# -- what share says where the link alone is not enough ---------------------------------------------


def test_a_jupyter_started_by_an_earlier_version_gets_links_at_its_next_start(sandbox: Sandbox) -> None:
    port = sandbox.port
    old_args = [
        a
        for a in jupyter_process.server_args(port, sandbox.notebooks)
        if "identity_provider_class" not in a and "allow_password_change" not in a
    ]
    old = subprocess.Popen(
        [sys.executable, "-m", "notebook", *old_args],
        env=sandbox.environ(REMOTE_AGENT_HOME=str(sandbox.state_dir)),  # as serve starts Jupyter
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sandbox.state_dir.mkdir(parents=True, exist_ok=True)
        record = {"pid": old.pid, "port": port, "root_dir": str(sandbox.notebooks), "provider": "ngrok"}
        (sandbox.state_dir / "jupyter.json").write_text(json.dumps(record))
        result = sandbox.run("share", "--name", "gus")
        assert result.returncode == 0, result.stderr
        assert "started by an earlier remote-agent" in result.stderr
        assert "next start" in result.stderr
    finally:
        old.kill()
        old.wait(10)


def test_in_ssh_mode_share_says_the_link_needs_ssh(sandbox: Sandbox) -> None:
    ssh_connection = "198.51.100.9 50000 10.0.0.5 22"
    result = sandbox.run("share", "--name", "hal", NGROK_AUTHTOKEN=None, SSH_CONNECTION=ssh_connection)
    assert result.returncode == 0, result.stderr
    assert "http://localhost:12345/login?" in result.stdout
    assert "SSH to this server themselves" in result.stdout
    assert "ssh -i ~/.ssh/KEY.pem -N -L 127.0.0.1:12345:127.0.0.1:" in result.stdout


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", ["0s", "5w", "soon", "-3h", "91d"])
def test_bad_durations_exit_2_with_a_message(sandbox: Sandbox, duration: str) -> None:
    result = sandbox.run("share", "--expires", duration)
    assert result.returncode == 2
    assert "--expires" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (sandbox.state_dir / "shares.json").exists(), "a link was made anyway"


def test_unknown_names_exit_2_with_a_message(sandbox: Sandbox) -> None:
    result = sandbox.run("share", "--revoke", "nobody")
    assert result.returncode == 2
    assert "no share link named 'nobody'" in result.stderr
    assert sandbox.run("share", "--name", "ivy").returncode == 0
    again = sandbox.run("share", "--name", "ivy")
    assert again.returncode == 2
    assert "already active" in again.stderr
    assert sandbox.run("share", "--name", "no spaces please").returncode == 2


# -- an owner's login cannot be forged from files ---------------------------------------------------


def forged_owner_cookies(box: Sandbox, host: str) -> list[tuple[str, str]]:
    """What code running as the owner (a collaborator's kernel) can make of every file it can read:
    for each file that could be a key, an owner cookie signed as Jupyter signs them (its cookie secret
    is an HMAC of its key file with the password hash), and one signed with the file itself."""
    from tornado.web import create_signed_value

    config = json.loads((box.home / ".jupyter" / "jupyter_server_config.json").read_text())
    hashed = config["IdentityProvider"]["hashed_password"]
    owner = {
        "username": "owner",
        "name": "owner",
        "display_name": "owner",
        "initials": None,
        "avatar_url": None,
        "color": None,
        "password": hashlib.sha256(hashed.encode()).hexdigest()[:16],
    }
    name = re.sub(r"[^A-Za-z0-9]", "-", f"username-{host}")
    cookies = []
    for path in sorted(p for p in box.home.rglob("*") if p.is_file() and p.stat().st_size <= 4096):
        key = path.read_bytes()
        for secret in (key, key.strip(), hmac.new(key, hashed.encode(), hashlib.sha256).digest()):
            if secret:
                signed = create_signed_value(secret, name, json.dumps(owner)).decode()
                cookies.append((path.name, f"{name}={signed}"))
    return cookies


def test_no_file_a_kernel_can_read_forges_an_owners_login(box: Sandbox) -> None:
    host = urlsplit(public_url(box)).netloc
    forged = forged_owner_cookies(box, host)
    assert "jupyter_cookie_secret" in {source for source, _ in forged}, "Jupyter's key file was not among them"
    client = JupyterClient(public_url(box))
    for source, cookie in forged:
        answer = client.session.get(client.base + "/api/status", headers={"Cookie": cookie}, timeout=10)
        assert answer.status_code == 403, f"a cookie signed with {source} logs in as the owner"
    # Nor after Jupyter restarts (a key kept in a file would come back).
    assert box.run("stop").returncode == 0
    assert box.run("serve", "--detach").returncode == 0
    for source, cookie in forged_owner_cookies(box, host):
        answer = client.session.get(client.base + "/api/status", headers={"Cookie": cookie}, timeout=10)
        assert answer.status_code == 403, f"after a restart, a cookie signed with {source} logs in as the owner"
    assert JupyterClient(public_url(box)).login(PASSWORD).status_code == 302, "the owner's own login broke"


# -- at rest ----------------------------------------------------------------------------------------------


def test_link_secrets_are_nowhere_at_rest(box: Sandbox) -> None:
    secrets = list(SEEN_SECRETS) or [parse_qs(urlsplit(make_link(box)["url"]).query)["token"][0]]
    records = box.state_dir / "shares.json"
    assert records.stat().st_mode & 0o777 == 0o600
    assert "secret_sha256" in records.read_text()
    for path in (p for p in box.state_dir.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        assert all(s not in text for s in secrets), f"a link's secret is in {path.name}"
    jupyter_log = (box.state_dir / "jupyter.log").read_text()
    assert "token=[secret]" in jupyter_log, "Jupyter logged no link request"
    assert "jupyter_login.py" not in jupyter_log, "remote-agent's login raised an error inside Jupyter"
    for window in ("jupyter", "tunnel"):
        screen = box.tmux("capture-pane", "-p", "-S", "-", "-t", f"remote-agent:{window}").stdout
        assert all(s not in screen for s in secrets), f"a link's secret is in the {window} window's scrollback"
    server = box.tmux_server_pid()
    assert server
    for pid in [server, *descendants(server)]:
        if not pid_alive(pid):
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert all(s not in argv and s not in environ for s in secrets), f"a link's secret reached pid {pid}"
    assert not any(s in os.environ.get("PATH", "") for s in secrets)


def test_a_browser_whose_link_was_revoked_can_join_with_a_new_link_or_the_password(box: Sandbox) -> None:
    first = make_link(box, "--name", "revoked-then-new")
    client, answer = follow_link(first["url"])
    assert answer.status_code == 302, answer.text
    assert box.run("share", "--revoke", "revoked-then-new").returncode == 0
    wait_until(lambda: client.get("/api/contents").status_code == 403, 20, "the revoked session to be refused")

    # The same browser (same cookies) is given a new link: its join page and button work.
    second = make_link(box, "--name", "given-again")
    _, page = open_link(second["url"], client)
    assert page.status_code == 200, page.text
    assert press_join(client, page).status_code == 302
    assert client.get("/api/contents").status_code == 200, "the new link's session was refused"

    # And after that link is revoked too, the owner's password still logs that browser in.
    assert box.run("share", "--revoke", "given-again").returncode == 0
    wait_until(lambda: client.get("/api/contents").status_code == 403, 20, "the second session to be refused")
    assert client.login(PASSWORD).status_code == 302
    assert client.get("/api/contents").status_code == 200
