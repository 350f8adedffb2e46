"""ngrok as it is today: dev domains, stale sessions, old agents, paid policy, the real API, log noise.

The ngrok cloud cannot be reached here: the fake agent (tests/fakeagent) stands in for it, in
today's behaviour by default; each test switches on what it needs through the fake's control file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, TOKEN, Sandbox, pid_alive, wait_until
from fakeagent import FakeNgrok, agent
from jupyter_client import JupyterClient

from remote_agent.commands.follow import follow
from remote_agent.commands.status_live import region_and_latency
from remote_agent.core.console import Console
from remote_agent.core.home import Home
from remote_agent.tunnel import state as tunnel_state
from remote_agent.tunnel.agent import AgentError, AgentNoiseFilter, classify, public_url_answers
from remote_agent.tunnel.keeper import OWN_SESSION_WINDOW, WAITING_FOR_RELEASE, Keeper
from remote_agent.tunnel.keeper_config import KeeperConfig
from remote_agent.tunnel.state import TunnelState

# -- decisions, with fake clocks and files ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal_334(url: str) -> AgentError:
    text = f"failed to start tunnel: The endpoint '{url}' is already online. Either ...\r\n\r\nERR_NGROK_334"
    return classify(Exception(text), ())


def test_334_is_our_own_stale_session_only_for_our_url_within_90_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    keeper = Keeper(Home(tmp_path).ensure(), KeeperConfig(port=8888, ngrok_path=None), clock=clock)
    ours = "https://amber-brisk-cedar.ngrok-free.dev"
    assert not keeper.own_stale_session(refusal_334(ours)), "a keeper that served nothing owns no URL"

    keeper.state = TunnelState(status="up", public_url=ours)
    keeper.note_serving()
    clock.now += 30
    assert keeper.own_stale_session(refusal_334(ours))
    assert not keeper.own_stale_session(refusal_334("https://other-words-here.ngrok-free.dev"))
    clock.now += OWN_SESSION_WINDOW
    assert not keeper.own_stale_session(refusal_334(ours)), "after 90 s it is another agent's"


def test_refusals_are_classified_by_code_and_name_what_to_do() -> None:
    refused = refusal_334("https://amber-brisk-cedar.ngrok-free.dev")
    assert refused.code == "ERR_NGROK_334"
    assert refused.kind == "conflict"
    assert "https://amber-brisk-cedar.ngrok-free.dev is already online" in refused.explain()
    old = classify(Exception(agent.error_message("ERR_NGROK_121", version="3.20.0", min_version="3.30.0")), ())
    assert (old.code, old.kind) == ("ERR_NGROK_121", "fatal")
    credit = classify(Exception(agent.error_message("ERR_NGROK_4026", context="endpoint")), ())
    assert (credit.code, credit.kind) == ("ERR_NGROK_4026", "fatal")
    assert classify(Exception(agent.error_message("ERR_NGROK_734")), ()).kind == "retry"


def test_status_reads_region_and_latency_from_the_session_legs() -> None:
    status = {"status": "online", "session": {"legs": [{"region": "eu", "latency": "87.51ms"}]}}
    assert region_and_latency(status) == "region eu, latency 88 ms"
    assert (
        region_and_latency({"session": {"legs": [{"region": "ap", "latency": "1.2s"}]}}) == "region ap, latency 1200 ms"
    )


def test_the_agents_per_call_lines_are_dropped_and_the_rest_kept() -> None:
    quiet = AgentNoiseFilter()

    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)

    assert not quiet.filter(record("pyngrok.process.ngrok", "t=x lvl=info msg=start pg=/api/endpoints/a id=1"))
    assert not quiet.filter(record("pyngrok.process.ngrok", "t=x lvl=info msg=end pg=/api/status id=1 status=200"))
    assert quiet.filter(record("pyngrok.process.ngrok", 't=x lvl=eror msg="failed to reconnect session"'))
    assert quiet.filter(record("remote_agent.tunnel.keeper", "msg=start pg=/api/ quoted by the keeper"))


def write_state(home: Home, **fields: Any) -> None:
    tunnel_state.write(home, TunnelState(keeper_pid=os.getpid(), **fields))


def test_follow_notices_a_quick_down_and_up_at_the_same_url(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    url = "https://amber-brisk-cedar.ngrok-free.dev"
    write_state(home, status="up", public_url=url, reopened=0)
    out = io.StringIO()
    console = Console(json_mode=True, out=out, err=io.StringIO())
    result: list[int] = []
    first = tunnel_state.read(home)
    assert first is not None
    thread = threading.Thread(target=lambda: result.append(follow(home, console, first)), daemon=True)
    thread.start()
    # Between two looks at the file (or before the first) the tunnel went down and came back.
    write_state(home, status="up", public_url=url, reopened=1, last_error="the ngrok agent exited")
    wait_until(lambda: '"tunnel_up"' in out.getvalue(), 10, "the tunnel_up event")
    write_state(home, status="stopped", reopened=1)
    thread.join(10)
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][:2] == ["tunnel_down", "tunnel_up"]
    assert events[1]["public_url"] == url
    assert result == [0]


# -- the public probe against the fake's edge -----------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNgrok]:
    fake = FakeNgrok(tmp_path / "ngrok")
    try:
        yield fake
    finally:
        fake.close()


def test_an_offline_endpoint_is_not_alive_a_502_from_the_agent_is(fake: FakeNgrok, tmp_path: Path) -> None:
    from pyngrok import ngrok

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        nothing = spare.getsockname()[1]
    cfg = fake.pyngrok_config()
    url = str(ngrok.connect(f"http://127.0.0.1:{nothing}", pyngrok_config=cfg).public_url)
    assert public_url_answers(url, 5), "ngrok's 502 (ERR_NGROK_8012): the agent is up, Jupyter is not"

    outage = fake.start_outage(3.0)
    fake.wait_for_event("outage_started", id=outage)
    assert not public_url_answers(url, 5), "404 with ERR_NGROK_3200: the endpoint is offline"


# -- end to end: serve, the keeper and the fake agent ----------------------------------


def test_our_own_stale_session_is_waited_out_with_quick_retries(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(stale_session_seconds=6)  # the edge keeps a killed agent's URL 6 s
    assert sandbox.run("serve", "--detach").returncode == 0
    url = sandbox.run("url").stdout.strip()
    keeper = sandbox.tunnel_state()["keeper_pid"]
    killed = sandbox.tunnel_state()["agent_pid"]

    os.kill(killed, signal.SIGKILL)

    wait_until(lambda: sandbox.tunnel_state().get("last_error") == WAITING_FOR_RELEASE, 20, "the keeper to wait")
    status = json.loads(sandbox.run("status", "--json").stdout)
    assert "waits" in status["tunnel"]["last_error"] or "waiting for ngrok to release" in status["tunnel"]["last_error"]
    wait_until(
        lambda: sandbox.tunnel_state().get("status") == "up" and sandbox.tunnel_state().get("agent_pid") != killed,
        40,
        "the tunnel back once the edge lets go",
    )
    assert sandbox.run("url").stdout.strip() == url
    assert sandbox.tunnel_state()["keeper_pid"] == keeper
    refused = [e for e in sandbox.fake.events() if e["event"] == "started"]
    assert len(refused) >= 4, "retried about every second, not after 10, 30, 60 s"
    api = sandbox.tunnel_state()["api_url"]
    with urllib.request.urlopen(f"{api}/api/endpoints", timeout=5) as response:
        endpoint = json.load(response)["endpoints"][0]
    assert endpoint["pooling_enabled"] is False, "never pooled with another agent"


def test_a_url_another_server_serves_ends_serve_and_the_keeper(sandbox: Sandbox) -> None:
    from pyngrok import ngrok

    # Another server on the same account: it holds the account's one dev domain.
    config = sandbox.fake.write_config(TOKEN, name="other-server.yml")
    other = sandbox.fake.pyngrok_config(config, ngrok_path=sandbox.fake.add_binary("other-server"))
    theirs = str(ngrok.connect("http://127.0.0.1:9", name="theirs", pyngrok_config=other).public_url)

    result = sandbox.run("serve", "--detach")

    assert result.returncode == 5, result.stdout + result.stderr
    assert "ERR_NGROK_334" in result.stderr
    assert theirs.replace("http://", "https://").split(":")[1] in result.stderr
    for advice in ("Stop the other agent", "NGROK_DOMAIN", "--tunnel ssh"):
        assert advice in result.stderr
    assert "Traceback" not in result.stderr
    wait_until(lambda: sandbox.tunnel_state().get("status") == "fatal", 10, "the keeper to stop")
    keeper = sandbox.tunnel_state()["keeper_pid"]
    wait_until(lambda: not pid_alive(keeper), 10, "the keeper to exit")
    assert ngrok.get_ngrok_process(other).proc.poll() is None, "the other server's agent is left alone"
    assert "ERR_NGROK_334" in json.loads(sandbox.run("status", "--json").stdout)["tunnel"]["last_error"]


def test_an_old_agent_stops_serve_and_doctor_says_how_to_update(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(version="3.29.0")

    result = sandbox.run("serve", "--detach")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "3.29.0" in result.stderr
    assert f"`{sandbox.fake.path} update`" in result.stderr, "the user's own binary: they update it"
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 4
    assert "version 3.29.0" in doctor.stdout

    refused = sandbox.run("doctor", "--update-agent")
    assert refused.returncode == 2
    assert "PYNGROK_NGROK_PATH" in refused.stderr
    assert sandbox.fake.control()["version"] == "3.29.0", "a binary the user named is never touched"

    # pyngrok's own binary (its default place under the sandbox's HOME) is updated by one command.
    # The session above named the user's binary; it ends with stop, and a new one may use pyngrok's.
    assert sandbox.run("stop").returncode == 0
    own = sandbox.home / ".config" / "ngrok" / "ngrok"
    own.parent.mkdir(parents=True)
    shutil.copy(sandbox.fake.path, own)
    updated = sandbox.run("doctor", "--update-agent", PYNGROK_NGROK_PATH=None)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert f"version {agent.LATEST_VERSION}" in updated.stdout
    doctor = sandbox.run("doctor", PYNGROK_NGROK_PATH=None)
    assert f"ngrok version {agent.LATEST_VERSION} at {own}" in doctor.stdout


def test_the_edge_rate_limit_is_opt_in_and_no_credit_is_said(sandbox: Sandbox) -> None:
    refused = sandbox.run("serve", "--detach", NGROK_LOGIN_RATE_LIMIT="20")  # the account has no credit
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "ERR_NGROK_4026" in refused.stderr
    assert "NGROK_LOGIN_RATE_LIMIT" in refused.stderr

    # Given on purpose, the setting holds for the session until given again (0: no rule).
    again = sandbox.run("serve", "--detach", NGROK_LOGIN_RATE_LIMIT=None)
    assert again.returncode == 5, again.stdout + again.stderr
    assert "NGROK_LOGIN_RATE_LIMIT=0" in again.stderr
    assert sandbox.run("serve", "--detach", NGROK_LOGIN_RATE_LIMIT="0").returncode == 0
    assert sandbox.run("stop").returncode == 0
    served = sandbox.run("serve", "--detach")  # a new session, by default: no paid rule, the tunnel opens
    assert served.returncode == 0, served.stdout + served.stderr
    url = sandbox.run("url").stdout.strip()
    assert JupyterClient(url).get("/api").status_code == 200
    api = sandbox.tunnel_state()["api_url"]
    with urllib.request.urlopen(f"{api}/api/endpoints", timeout=5) as response:
        endpoint = json.load(response)["endpoints"][0]
    assert "rate-limit" not in json.dumps(endpoint["traffic_policy"])


def test_keeper_log_at_rest_and_the_agent_api_off_port_4040(sandbox: Sandbox) -> None:
    squatter = socket.socket()  # a hand-started `ngrok http` holds 4040
    try:
        squatter.bind(("127.0.0.1", 4040))
        squatter.listen(1)
    except OSError:
        pass  # something already holds it, which is the case this test is about
    try:
        assert sandbox.run("serve", "--detach").returncode == 0
        run_config = (sandbox.state_dir / "ngrok-run.yml").read_text()
        port = re.search(r"web_addr: 127\.0\.0\.1:(\d+)", run_config)
        assert port is not None, run_config
        assert int(port[1]) != 4040
        assert sandbox.tunnel_state()["api_url"] == f"http://127.0.0.1:{port[1]}", "the address read back"

        log = sandbox.state_dir / "keeper.log"
        before = len(log.read_text().splitlines())
        sandbox.fake.set_control(record_api_calls=True)
        agent_pid = sandbox.tunnel_state()["agent_pid"]

        def checks() -> int:
            return sum(1 for e in sandbox.fake.events() if e["event"] == "api_call" and e["pid"] == agent_pid)

        # Eight health checks of the agent's API at rest, each logged twice by the agent.
        wait_until(lambda: checks() >= 8, 60, "eight health checks of the agent")
        lines = log.read_text().splitlines()
        assert not [line for line in lines if "pg=/api/" in line]
        assert len(lines) - before <= 1, lines[before:]
    finally:
        squatter.close()


def test_the_live_check_script_against_the_stand_in(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(stale_session_seconds=2)
    result = subprocess.run(
        [str(REPO / "scripts" / "check-real-ngrok.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=sandbox.notebooks,
        env=sandbox.environ(PYTHON=sys.executable),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "BAD" not in out
    assert re.search(r"ok   an endpoint without a URL got http://\S+\.ngrok-free\.dev\.localhost:\d+", out)
    assert "ok   /api/status has session.legs[].region and .latency: region us, latency 12 ms" in out
    assert "ok   the local API reports the endpoint as it was opened (URL, upstream, traffic policy)\n" in out
    assert re.search(r"ok   after a clean stop, a new agent got \S+ within [\d.]+ s", out)
    assert re.search(r"the edge held \S+ for about \d+ s \(\d+ refusals with ERR_NGROK_334\)", out)
    assert sandbox.fake.live_agent_pids() == []


def test_after_keeper_and_agent_die_the_next_serve_waits_for_the_old_session(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(stale_session_seconds=6)
    assert sandbox.run("serve", "--detach").returncode == 0
    url = sandbox.run("url").stdout.strip()
    state = sandbox.tunnel_state()
    os.kill(state["keeper_pid"], signal.SIGKILL)
    os.kill(state["agent_pid"], signal.SIGKILL)
    wait_until(lambda: not pid_alive(state["keeper_pid"]), 10, "the keeper to be gone")

    again = sandbox.run("serve", "--detach")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "waiting for ngrok to release the old session" in again.stderr
    assert sandbox.run("url").stdout.strip() == url, "the URL this server served: ours again, not another's"
