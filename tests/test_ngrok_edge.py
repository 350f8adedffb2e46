"""What ngrok says at the edge: refusals per request, a Cloud Endpoint on the dev domain, permanent refusals.

The ngrok cloud cannot be reached here: the fake agent (tests/fakeagent) stands in for it. Its
switches for these behaviours are tested first, against the fake alone; then the product.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import REPO, TOKEN, Sandbox, pid_alive, wait_until
from fakeagent import FakeNgrok, agent, http_request
from pyngrok import ngrok
from pyngrok.exception import PyngrokNgrokHTTPError
from pyngrok.log import NgrokLog
from test_fake_agent import RecordingServer, error_body, serve_in_thread
from test_keeper_decisions import Harness

from remote_agent.commands.follow import follow
from remote_agent.core.console import Console
from remote_agent.core.home import Home
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.agent import AgentNoiseFilter, classify
from remote_agent.tunnel.edge_watch import PROBE_EVERY, RECHECK_EVERY, EdgeAnswer, EdgeWatch, describe
from remote_agent.tunnel.state import TunnelState

LOGIN_LIMIT = {
    "on_http_request": [
        {
            "expressions": ["req.method == 'POST' && req.url.path == '/login'"],
            "actions": [{"type": "rate-limit", "config": {"capacity": 20, "rate": "60s"}}],
        }
    ]
}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNgrok]:
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)  # a developer's own token must not leak in
    fake = FakeNgrok(tmp_path / "ngrok")
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def upstream() -> Iterator[RecordingServer]:
    server = RecordingServer()
    stop = serve_in_thread(server)
    try:
        yield server
    finally:
        stop()


# -- the fake agent's switches ---------------------------------------------------------


def test_fake_quota_refusal_answers_every_request_while_the_session_stays_up(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, pyngrok_config=cfg).public_url)
    fake.set_control(edge_refusal="ERR_NGROK_727")
    refused = http_request(url, "/api", headers={"ngrok-skip-browser-warning": "1"})
    assert refused.headers["ngrok-error-code"] == "ERR_NGROK_727"
    assert "HTTP requests limit for the month" in refused.text
    assert upstream.requests == []
    api = ngrok.get_ngrok_process(cfg).api_url
    assert ngrok.api_request(f"{api}/api/status")["status"] == "online", "the session stays up"
    fake.set_control(edge_refusal=None)
    assert http_request(url).body == b"hello from upstream"


def test_fake_no_credit_per_request_refuses_only_what_runs_the_paid_action(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    fake.set_control(credit_refused_at="request")
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, traffic_policy=json.dumps(LOGIN_LIMIT), pyngrok_config=cfg).public_url)
    login = http_request(url, "/login", method="POST", body=b"")
    assert login.headers["ngrok-error-code"] == "ERR_NGROK_4026"
    assert http_request(url, "/login").body == b"hello from upstream", "a GET does not run the rule"
    fake.set_control(credit_refused_at=None)  # the default: refused at creation, as before
    with pytest.raises(PyngrokNgrokHTTPError) as refused:
        ngrok.connect(upstream.url, name="again", traffic_policy=json.dumps(LOGIN_LIMIT), pyngrok_config=cfg)
    assert error_body(refused.value)["details"]["err"].endswith("ERR_NGROK_4026")


def test_fake_cloud_endpoint_holds_the_dev_domain_and_shows_its_page(fake: FakeNgrok) -> None:
    held = fake.start_cloud_endpoint()
    with pytest.raises(PyngrokNgrokHTTPError) as refused:
        ngrok.connect("http://127.0.0.1:9", pyngrok_config=fake.pyngrok_config())
    err = error_body(refused.value)["details"]["err"]
    assert err.endswith("ERR_NGROK_334")
    assert f"'{held}'" in err
    page = http_request(held, headers={"ngrok-skip-browser-warning": "1"})
    assert page.status == 200
    assert "Your new ngrok Cloud Endpoint!" in page.text


def test_fake_permanent_refusals(fake: FakeNgrok, upstream: RecordingServer) -> None:
    fake.set_control(custom_domains=False)  # a free plan
    cfg = fake.pyngrok_config()
    with pytest.raises(PyngrokNgrokHTTPError) as own_domain:
        ngrok.connect(upstream.url, url="https://mine.ngrok.localhost", pyngrok_config=cfg)
    assert error_body(own_domain.value)["details"]["err"].endswith("ERR_NGROK_313")
    expression = {
        "on_http_request": [{"actions": [{"type": "basic-auth", "config": {"credentials": ["u:${x}abcdefgh"]}}]}]
    }
    with pytest.raises(PyngrokNgrokHTTPError) as policy:
        ngrok.connect(upstream.url, traffic_policy=json.dumps(expression), pyngrok_config=cfg)
    assert error_body(policy.value)["details"]["err"].endswith("ERR_NGROK_2201")


def test_fake_browser_warning_for_any_browser_with_ngroks_cookie_and_code(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    url = str(ngrok.connect(upstream.url, pyngrok_config=fake.pyngrok_config()).public_url)
    browser = {"User-Agent": "Opera/9.80 (X11; Linux x86_64) Presto/2.12.388 Version/12.16"}  # no "Mozilla"
    page = http_request(url, "/tree", headers=browser)
    assert page.headers["ngrok-error-code"] == "ERR_NGROK_6024"
    action = re.search(r'form method="post" action="([^"]+)"', page.text)
    assert action is not None
    clicked = http_request(url, action[1], method="POST", headers=browser, body=b"")
    cookie = clicked.headers["set-cookie"].split(";")[0]
    assert cookie == f"abuse_interstitial={urlsplit(url).hostname}"
    assert http_request(url, "/tree", headers={**browser, "Cookie": cookie}).body == b"hello from upstream"


def test_fake_logs_each_visitor_and_the_session_loss_at_error_with_a_growing_backoff(
    fake: FakeNgrok, upstream: RecordingServer
) -> None:
    logs: list[NgrokLog] = []
    cfg = fake.pyngrok_config(log_event_callback=logs.append)
    url = str(ngrok.connect(upstream.url, pyngrok_config=cfg).public_url)
    http_request(url)
    joined = wait_until(lambda: [log for log in logs if log.msg == "join connections"], 10, "a join line")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", getattr(joined[0], "r", "")), "the visitor's address"

    outage = fake.start_outage(4.0)
    fake.wait_for_event("outage_ended", id=outage, timeout=30)
    lost = [log for log in logs if log.msg == "session closed, starting reconnect loop"]
    assert [log.lvl for log in lost] == ["ERROR"]
    failures = [log for log in logs if log.msg == "failed to reconnect session"]
    # Retries at 0, 0.5, 1.5 and 3.5 s (then 7.5 s, after the outage): a fixed 0.5 s would make 8.
    assert 3 <= len(failures) <= 5, len(failures)


def offline_code(url: str) -> str | None:
    """ngrok's code on what the URL answers now; None while nothing answers there."""
    try:
        reply = http_request(url, timeout=2)
    except OSError:
        return None
    return f"{reply.status} {reply.headers.get('ngrok-error-code', '')}"


def test_fake_edge_answers_3200_for_a_killed_agents_url_by_default(fake: FakeNgrok, upstream: RecordingServer) -> None:
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(upstream.url, pyngrok_config=cfg).public_url)
    killed = ngrok.get_ngrok_process(cfg).proc
    killed.kill()
    killed.wait(10)
    assert wait_until(lambda: offline_code(url), 10, "the edge to answer") == "404 ERR_NGROK_3200"

    ngrok.kill(cfg)  # forget the dead process; a new agent takes the URL back from the edge
    again = str(ngrok.connect(upstream.url, pyngrok_config=cfg).public_url)
    assert again == url
    assert wait_until(lambda: offline_code(url) == "200 ", 10, "forwarding to resume")


# -- the keeper's decisions, with a fake clock -----------------------------------------


class ScriptedEdge:
    """What the public URL answers, by fake time: ngrok refuses from `start` to `end`."""

    def __init__(self, clock: Any, code: str, start: float, end: float) -> None:
        self.clock, self.code, self.start, self.end = clock, code, start, end
        self.asked: list[tuple[float, str, str]] = []

    def __call__(self, url: str, method: str, path: str) -> EdgeAnswer:
        self.asked.append((self.clock(), method, path))
        if self.start <= self.clock() < self.end:
            return EdgeAnswer(429, self.code)
        return EdgeAnswer(200)


def test_the_keeper_records_an_edge_refusal_and_its_end_probing_lightly(tmp_path: Path) -> None:
    h = Harness(tmp_path, ["https://a.ngrok-free.dev"])
    edge = ScriptedEdge(h.time.clock, "ERR_NGROK_727", start=1000.0, end=3000.0)
    h.keeper.edge = EdgeWatch(h.time.clock, asker=edge)
    seen: list[tuple[str, Any, Any]] = []

    def look() -> None:
        state = h.state()
        seen.append((state.status, state.edge_refused, state.last_error))

    for when in (10.0, 2 * PROBE_EVERY + 1, 3000.0 + RECHECK_EVERY + 1):
        h.time.at(when, look)
    h.time.at(3200.0, h.keeper.stop)
    assert h.keeper.run() == 0

    assert seen[0][1] is None, "nothing refused yet"
    refused, message = seen[1][1], seen[1][2]
    assert refused is not None, "seen at the next probe"
    assert refused["code"] == "ERR_NGROK_727"
    assert "ERR_NGROK_727" in message
    assert "monthly limit of HTTP requests" in message
    assert seen[1][0] == "up", "the agent itself is fine"
    assert seen[2][1] is None, "cleared within a minute once ngrok serves visitors again"
    assert seen[2][2] is None, "the refusal is no longer the last error"
    probes = [t for t, _, _ in edge.asked]
    assert probes[0] == 0.0, "probed as soon as the tunnel opened"
    assert probes[1] == PROBE_EVERY, "then rarely while all is well"
    assert len(probes) <= 3 + (3000.0 - 2 * PROBE_EVERY) / RECHECK_EVERY + 2, "light: not every health check"
    assert [m for _, m, _ in edge.asked] == ["HEAD"] * len(probes), "no login probe without a login rate limit"


def test_with_a_login_rate_limit_the_probe_also_posts_to_login(tmp_path: Path) -> None:
    h = Harness(tmp_path, ["https://a.ngrok-free.dev"])
    asked: list[tuple[str, str]] = []

    def answer(url: str, method: str, path: str) -> EdgeAnswer:
        asked.append((method, path))
        return EdgeAnswer(402, "ERR_NGROK_4026") if method == "POST" else EdgeAnswer(200)

    h.keeper.edge = EdgeWatch(h.time.clock, login_rate=20, asker=answer)
    h.time.at(5.0, h.keeper.stop)
    assert h.keeper.run() == 0
    assert ("POST", "/login") in asked
    message = tunnel_state.read(h.home).last_error  # type: ignore[union-attr]
    assert message is not None
    assert "ERR_NGROK_4026" in message
    assert "Remove NGROK_LOGIN_RATE_LIMIT" in message
    assert "add credit" in message


def test_permanent_refusals_are_fatal_with_ngroks_words_and_108_quotes_the_limit() -> None:
    for code in ("ERR_NGROK_313", "ERR_NGROK_15002", "ERR_NGROK_15013", "ERR_NGROK_2201", "ERR_NGROK_2209"):
        refused = classify(Exception(agent.error_message(code, context="endpoint", url="mine.ngrok.app")), ())
        assert (refused.code, refused.kind) == (code, "fatal")
    own = classify(Exception(agent.error_message("ERR_NGROK_313", context="endpoint", url="mine.ngrok.app")), ())
    assert "Only paid plans may bind custom subdomains" in own.explain()
    limited = classify(Exception(agent.error_message("ERR_NGROK_108", limit="1")), ())
    assert limited.kind == "conflict"
    assert "Your account is limited to 1 simultaneous ngrok agent sessions." in limited.explain()
    assert "3" not in limited.explain()


def test_the_agents_visitor_lines_are_dropped() -> None:
    quiet = AgentNoiseFilter()
    line = 't=x lvl=info msg="join connections" obj=join id=ab12 l=127.0.0.1:8888 r=203.0.113.7:51234'
    record = logging.LogRecord("pyngrok.process.ngrok", logging.INFO, __file__, 1, line, None, None)
    assert not quiet.filter(record)


def test_answers_that_are_not_refusals() -> None:
    assert EdgeAnswer(429, "ERR_NGROK_727").refusal == "ERR_NGROK_727"
    assert EdgeAnswer(502, "ERR_NGROK_8012").refusal is None, "the agent is reached, Jupyter is not"
    assert EdgeAnswer(404, "ERR_NGROK_3200").refusal is None, "offline: the health check's business"
    assert EdgeAnswer(401, "ERR_NGROK_7100").refusal is None, "basic auth asks the probe for its password"
    assert EdgeAnswer(200).refusal is None


def test_a_following_serve_says_when_the_edge_refuses(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    url = "https://amber-brisk-cedar.ngrok-free.dev"
    tunnel_state.write(home, TunnelState(keeper_pid=os.getpid(), status="up", public_url=url))
    out, err = io.StringIO(), io.StringIO()
    console = Console(json_mode=True, out=out, err=err)
    first = tunnel_state.read(home)
    assert first is not None
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(follow(home, console, first)), daemon=True)
    thread.start()
    refusal = {"code": "ERR_NGROK_725", "message": describe("ERR_NGROK_725"), "at": "2026-12-04T14:00:00+00:00"}
    tunnel_state.write(home, TunnelState(keeper_pid=os.getpid(), status="up", public_url=url, edge_refused=refusal))
    wait_until(lambda: '"edge_refused"' in out.getvalue(), 10, "the edge_refused event")
    tunnel_state.write(home, TunnelState(keeper_pid=os.getpid(), status="stopped"))
    thread.join(10)
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    refused = [e for e in events if e["event"] == "edge_refused"]
    assert len(refused) == 1
    assert refused[0]["code"] == "ERR_NGROK_725"
    assert "monthly bandwidth limit" in refused[0]["message"]
    assert "ERR_NGROK_725" in err.getvalue()
    assert result == [0]


# -- end to end: serve, the keeper and the fake agent ----------------------------------


def test_refusals_at_the_edge_are_seen_said_and_cleared(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(edge_refusal="ERR_NGROK_727")  # the month's requests are used up
    first = sandbox.run("serve", "--detach")
    assert first.returncode == 0, first.stdout + first.stderr
    wait_until(lambda: sandbox.tunnel_state().get("edge_refused"), 20, "the keeper to see the refusal")

    status = sandbox.run("status", "--json")
    assert status.returncode == 3
    last_error = json.loads(status.stdout)["tunnel"]["last_error"]
    assert "ERR_NGROK_727" in last_error
    assert "monthly limit of HTTP requests" in last_error
    again = sandbox.run("serve", "--detach", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    refused = [e for e in events if e["event"] == "edge_refused"]
    assert refused, events
    assert refused[0]["code"] == "ERR_NGROK_727"
    assert "monthly limit" in refused[0]["message"]
    assert refused[0]["at"]
    human = sandbox.run("serve", "--detach")
    assert "ERR_NGROK_727" in human.stderr

    # Visitors were not logged one line each, nor with their address.
    url = sandbox.run("url").stdout.strip()
    sandbox.fake.set_control(edge_refusal=None)
    for _ in range(3):
        http_request(url, "/api")
    log = (sandbox.state_dir / "keeper.log").read_text()
    assert "join connections" not in log

    sandbox.kill_agent_and_wait_for_reopen()  # a new agent: the keeper looks at once
    wait_until(lambda: sandbox.tunnel_state().get("edge_refused") is None, 20, "the refusal to clear")
    assert sandbox.run("status").returncode == 0

    # No credit for the login rate limit, answered per login rather than at creation: named too.
    sandbox.fake.set_control(credit_refused_at="request")
    limited = sandbox.run("serve", "--detach", NGROK_LOGIN_RATE_LIMIT="20")
    assert limited.returncode == 0, limited.stdout + limited.stderr

    def refused_code() -> str | None:
        refusal = sandbox.tunnel_state().get("edge_refused")
        return refusal["code"] if refusal else None

    assert wait_until(refused_code, 20, "the keeper to see the login refused") == "ERR_NGROK_4026"
    status = sandbox.run("status")
    assert status.returncode == 3
    assert "ERR_NGROK_4026" in status.stdout
    assert "Remove NGROK_LOGIN_RATE_LIMIT" in status.stdout
    assert "add credit" in status.stdout


def test_refusals_that_retrying_cannot_change_end_serve_at_once(sandbox: Sandbox) -> None:
    # Basic-auth credentials ngrok would refuse are refused before anything starts.
    for credential, words in (("user:short", "8 to 128"), ("user:" + "x" * 129, "8 to 128"), ("u:${env.X}abcd", "${")):
        bad = sandbox.run("serve", "--detach", NGROK_BASIC_AUTH=credential)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "NGROK_BASIC_AUTH" in bad.stderr
        assert words in bad.stderr
        assert credential.partition(":")[2] not in bad.stderr + bad.stdout, "the password is not echoed"
    assert sandbox.tunnel_state() == {}, "nothing started"

    # A Cloud Endpoint ngrok created holds the new account's dev domain: named, and told apart by doctor.
    sandbox.fake.start_cloud_endpoint(TOKEN)
    held = sandbox.run("serve", "--detach")
    assert held.returncode == 5, held.stdout + held.stderr
    assert "ERR_NGROK_334" in held.stderr
    assert "Cloud Endpoint" in held.stderr
    assert "dashboard.ngrok.com/endpoints" in held.stderr
    assert "Stop the other agent" in held.stderr, "the other case is named too"
    doctor = sandbox.run("doctor")
    assert "held by a Cloud Endpoint" in doctor.stdout, doctor.stdout
    assert "dashboard.ngrok.com/endpoints" in doctor.stdout

    # A domain of one's own on a free plan: ngrok's reason, what to do, and no retry.
    sandbox.fake.set_control(custom_domains=False)
    before = sum(1 for e in sandbox.fake.events() if e["event"] == "started")
    own = sandbox.run("serve", "--detach", NGROK_DOMAIN="mine.ngrok.localhost")
    assert own.returncode == 5, own.stdout + own.stderr
    assert "ERR_NGROK_313" in own.stderr
    assert "Only paid plans may bind custom subdomains" in own.stderr, "ngrok's reason"
    assert "Remove NGROK_DOMAIN" in own.stderr
    keeper = sandbox.tunnel_state()["keeper_pid"]
    wait_until(lambda: not pid_alive(keeper), 10, "the keeper to stop")
    assert sum(1 for e in sandbox.fake.events() if e["event"] == "started") == before + 1, "not retried"


def run_live_check(sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "check-real-ngrok.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=sandbox.notebooks,
        env=sandbox.environ(PYTHON=sys.executable),
        check=False,
    )


def test_the_live_check_says_what_the_url_answers_and_who_holds_the_dev_domain(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(stale_session_seconds=1, edge_refusal="ERR_NGROK_727")
    refused = run_live_check(sandbox)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "ok   the account's dev domain is free for an agent" in refused.stdout
    assert re.search(r"BAD  http://\S+ answers HTTP 429 \(ngrok-error-code: ERR_NGROK_727\)", refused.stdout)

    sandbox.fake.set_control(edge_refusal=None)
    sandbox.fake.start_cloud_endpoint(TOKEN)
    held = run_live_check(sandbox)
    assert held.returncode == 1, held.stdout + held.stderr
    assert "is held by a Cloud Endpoint ngrok created" in held.stdout
    assert "dashboard.ngrok.com/endpoints" in held.stdout
    assert sandbox.fake.live_agent_pids() == []
