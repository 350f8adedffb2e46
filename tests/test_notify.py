"""Hooks on a new public URL: a command and a webhook, tested against a local HTTP receiver.

The in-process tests drive remote_agent.tunnel.notify directly (real processes, a real HTTP
server on 127.0.0.1); the last one runs the whole thing: serve, the keeper, the fake
agent dying, and the hooks hearing about both URLs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, TOKEN, Sandbox, free_port, pid_alive, wait_until
from receiver import Receiver

from remote_agent.config.settings import resolve
from remote_agent.core.errors import BadInput
from remote_agent.tunnel.notify import Notifier, command_argv, needs_shell

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"
NEW_URL_LINE = r"New public URL\s+(http://\S+\.localhost:\d+)"
ENVIRON = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "NGROK_AUTHTOKEN": TOKEN, "JUPYTER_PASSWORD": PASSWORD}


def recording_hook(directory: Path, exit_code: int = 0) -> tuple[str, Path]:
    """A command line that appends its argv and environment to a JSON-lines file."""
    record = directory / "hook-calls.jsonl"
    script = directory / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}) + '\\n')\n"
        f"sys.exit({exit_code})\n"
    )
    return f"{sys.executable} {script}", record


def calls(record: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in record.read_text().splitlines()]
    except OSError:
        return []


def test_shell_only_when_the_command_needs_one() -> None:
    assert not needs_shell("/usr/local/bin/announce --to 'my team'")
    assert command_argv("/usr/local/bin/announce --to 'my team'", "https://x") == [
        "/usr/local/bin/announce",
        "--to",
        "my team",
        "https://x",
    ]
    ntfy = 'curl -d "Jupyter: $REMOTE_AGENT_PUBLIC_URL" ntfy.sh/mytopic'
    assert needs_shell(ntfy)
    assert command_argv(ntfy, "https://x") == ["/bin/sh", "-c", ntfy, "remote-agent", "https://x"]


def test_command_gets_the_url_as_argument_and_environment_without_secrets(tmp_path: Path) -> None:
    command, record = recording_hook(tmp_path)
    notifier = Notifier(command, None, environ=ENVIRON, host="box-1")
    notifier.url_changed("http://new.example", "http://old.example")
    assert notifier.wait_idle(20)
    (call,) = calls(record)
    assert call["argv"] == ["http://new.example"]
    env = call["env"]
    assert env["REMOTE_AGENT_PUBLIC_URL"] == "http://new.example"
    assert env["REMOTE_AGENT_PREVIOUS_URL"] == "http://old.example"
    assert env["REMOTE_AGENT_HOST"] == "box-1"
    assert "NGROK_AUTHTOKEN" not in env
    assert "JUPYTER_PASSWORD" not in env
    assert TOKEN not in json.dumps(env)


def test_shell_command_sees_the_url_as_dollar_one(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    notifier = Notifier(f'printf "%s|%s\\n" "$1" "$REMOTE_AGENT_PREVIOUS_URL" >> {out}', None, environ=ENVIRON)
    notifier.url_changed("http://first.example", None)
    assert notifier.wait_idle(20)
    assert out.read_text() == "http://first.example|\n"


def test_webhook_posts_the_documented_body() -> None:
    with Receiver() as receiver:
        notifier = Notifier(None, receiver.url, host="box-1")
        notifier.url_changed("http://new.example", "http://old.example")
        assert notifier.wait_idle(20)
        (request,) = receiver.requests
    assert request["path"] == "/hook/secret-path"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert set(body) == {"public_url", "previous_url", "at", "host"}
    assert body["public_url"] == "http://new.example"
    assert body["previous_url"] == "http://old.example"
    assert body["host"] == "box-1"
    assert body["at"].endswith("+00:00")


def test_failing_hooks_are_logged_retried_and_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remote_agent.tunnel.notify")
    command, record = recording_hook(tmp_path, exit_code=3)
    with Receiver(status=500) as receiver:
        notifier = Notifier(command, receiver.url, environ=ENVIRON, retry_delays=(0.05,))
        notifier.url_changed("http://new.example", None)
        assert notifier.wait_idle(20)
        assert len(receiver.requests) == 2, "tried again once"
    assert len(calls(record)) == 2
    text = caplog.text
    assert "the URL-change command failed (exit 3" in text
    assert "answered 500" in text
    assert "gave up on the command and webhook" in text
    assert "secret-path" not in text, "a webhook's path is often its secret: never logged"

    caplog.clear()
    leaky = Notifier("echo https://hooks.example/T0/B0/SECRET; exit 1", None, environ=ENVIRON, retry_delays=())
    leaky.url_changed("http://new.example", None)
    assert leaky.wait_idle(20)
    assert "failed (exit 1" in caplog.text
    assert "SECRET" not in caplog.text, "a URL in the command is masked in its logged output"

    caplog.clear()
    unreachable = Notifier(None, f"http://127.0.0.1:{free_port()}/x", retry_delays=())
    unreachable.url_changed("http://new.example", None)
    assert unreachable.wait_idle(20)
    assert "could not be reached" in caplog.text


def test_slow_command_is_stopped_and_never_blocks_the_caller(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    # The hook waits until the test lets it go: url_changed must return while it still runs.
    hook = f"while [ ! -e {go} ]; do sleep 0.05; done; echo $$ > {pid_file}; exec sleep 60"
    notifier = Notifier(hook, None, command_timeout=5, retry_delays=())
    notifier.url_changed("http://new.example", None)
    assert not notifier.idle.is_set(), "url_changed waited for the hook"
    go.touch()
    assert notifier.wait_idle(30)
    assert "did not finish within 5 s" in caplog.text
    assert not pid_alive(int(pid_file.read_text()))


# The README's one-line templates, as they go into .env; the service's URL points at a local receiver.
TEMPLATES = {
    "ntfy": (
        """REMOTE_AGENT_ON_URL_CHANGE='curl -fsS -d "Jupyter on $REMOTE_AGENT_HOST: $REMOTE_AGENT_PUBLIC_URL" """
        """https://ntfy.sh/my-topic'""",
        "Jupyter on box-1: http://new.example",
    ),
    "slack": (
        """REMOTE_AGENT_ON_URL_CHANGE='curl -fsS -H "Content-Type: application/json" """
        """-d "{\\"text\\": \\"Jupyter: $REMOTE_AGENT_PUBLIC_URL\\"}" https://hooks.slack.com/services/T0/B0/XXXX'""",
        {"text": "Jupyter: http://new.example"},
    ),
    "discord": (
        """REMOTE_AGENT_ON_URL_CHANGE='curl -fsS -H "Content-Type: application/json" """
        """-d "{\\"content\\": \\"Jupyter: $REMOTE_AGENT_PUBLIC_URL\\"}" https://discord.com/api/webhooks/1/XXXX'""",
        {"content": "Jupyter: http://new.example"},
    ),
}


@pytest.mark.parametrize("service", sorted(TEMPLATES))
def test_documented_templates_send_what_the_service_expects(tmp_path: Path, service: str) -> None:
    assert shutil.which("curl"), "the README's templates use curl: apt-get install curl (scripts/test.sh does)"
    line, expected = TEMPLATES[service]
    with Receiver() as receiver:
        for real in (
            "https://ntfy.sh/my-topic",
            "https://hooks.slack.com/services/T0/B0/XXXX",
            "https://discord.com/api/webhooks/1/XXXX",
        ):
            line = line.replace(real, receiver.url)
        (tmp_path / ".env").write_text(line + "\n")
        settings = resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path)
        assert settings.on_url_change is not None
        notifier = Notifier(settings.on_url_change, None, environ=ENVIRON, host="box-1", retry_delays=())
        notifier.url_changed("http://new.example", None)
        assert notifier.wait_idle(20)
        assert receiver.bodies == [expected]


def test_keeper_runs_the_hooks_on_each_new_url_and_serve_suggests_a_domain(sandbox: Sandbox) -> None:
    # A URL that changes on each reopen: ngrok before dev domains, or a paid plan's random URLs.
    sandbox.fake.set_control(dev_domain=False)
    command, record = recording_hook(sandbox.root)
    with Receiver() as receiver:
        serve = sandbox.follow(REMOTE_AGENT_WEBHOOK=receiver.url, REMOTE_AGENT_ON_URL_CHANGE=command)
        first = serve.wait_for(URL_LINE, timeout=90)[1]
        wait_until(lambda: receiver.bodies and calls(record), 20, "the hooks to hear of the first URL")
        assert receiver.bodies[0]["public_url"] == first
        assert receiver.bodies[0]["previous_url"] is None
        assert receiver.bodies[0]["host"] == socket.gethostname()

        os.kill(sandbox.tunnel_state()["agent_pid"], signal.SIGKILL)
        second = serve.wait_for(NEW_URL_LINE, timeout=15)[1]
        # After the first reopen that changed the URL, serve suggests a reserved domain, once.
        serve.wait_for(r"set NGROK_DOMAIN in \.env", timeout=5)
        assert any(line.startswith("Tip ") for line in serve.lines)
        wait_until(lambda: len(receiver.bodies) >= 2, 20, "the webhook to hear of the new URL")
        assert receiver.bodies[1]["public_url"] == second
        assert receiver.bodies[1]["previous_url"] == first

    wait_until(lambda: len(calls(record)) >= 2, 20, "the command to hear of the new URL")
    first_call, second_call = calls(record)[:2]
    assert first_call["argv"] == [first]
    assert second_call["argv"] == [second]
    assert second_call["env"]["REMOTE_AGENT_PREVIOUS_URL"] == first
    for call in calls(record):
        assert TOKEN not in json.dumps(call), "no secret reaches the hook"
        assert PASSWORD not in json.dumps(call)
    keeper_log = (sandbox.state_dir / "keeper.log").read_text()
    assert "the webhook http://127.0.0.1:" in keeper_log
    assert "secret-path" not in keeper_log

    again = sandbox.run("serve", "--detach", REMOTE_AGENT_WEBHOOK=receiver.url, REMOTE_AGENT_ON_URL_CHANGE=command)
    assert again.returncode == 0, again.stderr
    assert "NGROK_DOMAIN" not in again.stdout, "the suggestion comes once"
    assert "the tunnel keeper restarts" not in again.stderr, "unchanged hooks keep the keeper"
    # A hook merely missing from this shell changes nothing; one given anew is taken at once.
    absent = sandbox.run("serve", "--detach", REMOTE_AGENT_WEBHOOK=None, REMOTE_AGENT_ON_URL_CHANGE=None)
    assert absent.returncode == 0, absent.stderr
    assert "the tunnel keeper restarts" not in absent.stderr
    changed = sandbox.run("serve", "--detach", REMOTE_AGENT_WEBHOOK=receiver.url + "other")
    assert changed.returncode == 0, changed.stderr
    assert "REMOTE_AGENT_WEBHOOK changed: the tunnel keeper restarts" in changed.stderr


def test_hook_settings_are_checked_and_documented(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    assert "\nREMOTE_AGENT_ON_URL_CHANGE=" in example
    assert "\nREMOTE_AGENT_WEBHOOK=" in example
    env = {"HOME": str(tmp_path)}
    with pytest.raises(BadInput, match="REMOTE_AGENT_WEBHOOK must be an http"):
        resolve({}, {**env, "REMOTE_AGENT_WEBHOOK": "ftp://example.com/x"}, cwd=tmp_path)
    with pytest.raises(BadInput, match="cannot be parsed"):
        resolve({}, {**env, "REMOTE_AGENT_ON_URL_CHANGE": "notify 'unclosed"}, cwd=tmp_path)
    (tmp_path / ".env").write_text("REMOTE_AGENT_WEBHOOK=https://from-file.example/x\n")
    assert resolve({}, env, cwd=tmp_path).webhook == "https://from-file.example/x"
    overridden = resolve({}, {**env, "REMOTE_AGENT_WEBHOOK": "https://from-env.example/y"}, cwd=tmp_path)
    assert overridden.webhook == "https://from-env.example/y"
    assert "from-env" not in repr(overridden), "a webhook URL may be a secret: not in repr"


def test_a_password_in_the_webhook_url_is_sent_as_basic_auth_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="remote_agent.tunnel.notify")
    with Receiver() as receiver:
        url = receiver.url.replace("http://", "http://hookuser:s3cret-hook-pw@")
        notifier = Notifier(None, url, retry_delays=())
        notifier.url_changed("http://new.example", None)
        assert notifier.wait_idle(20)
        (request,) = receiver.requests
    expected = "Basic " + base64.b64encode(b"hookuser:s3cret-hook-pw").decode()
    assert request["headers"]["Authorization"] == expected
    assert request["body"]["public_url"] == "http://new.example"
    assert "took the new URL (200)" in caplog.text
    assert "s3cret-hook-pw" not in caplog.text
    assert "hookuser" not in caplog.text
    assert "secret-path" not in caplog.text


def test_a_redirect_from_the_webhook_is_reported_and_not_followed(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver() as elsewhere:
        redirect = elsewhere.url.replace("/hook/", "/stolen/")
        with Receiver(status=302, headers={"Location": redirect}) as receiver:
            notifier = Notifier(None, receiver.url, retry_delays=(0.05,))
            notifier.url_changed("http://new.example", None)
            assert notifier.wait_idle(20)
            assert len(receiver.requests) == 1, "a redirect is a configuration to fix, not retried"
        assert elsewhere.requests == [], "the redirect was followed"
    port = redirect.split(":")[2].split("/")[0]
    assert f"answered 302, a redirect to http://127.0.0.1:{port}/..." in caplog.text
    assert "does not follow redirects" in caplog.text
    assert "stolen" not in caplog.text


def test_plain_http_webhook_to_another_machine_is_refused(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    # A receiver on this machine's network address, not loopback: what a webhook on another host is.
    with Receiver(address=non_loopback_address()) as receiver:
        notifier = Notifier(None, receiver.url, retry_delays=(0.05,))
        notifier.url_changed("http://new.example", None)
        assert notifier.wait_idle(20)
        assert receiver.requests == [], "the public URL went out over plain http"
    assert "not sending the new URL to the webhook" in caplog.text

    refused = sandbox.run("serve", "--detach", REMOTE_AGENT_WEBHOOK="http://hooks.example.com/T0/secret-path")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "plain http:// URL to hooks.example.com" in refused.stderr
    assert "https://" in refused.stderr
    assert "secret-path" not in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sandbox.tmux_server_pid() is None, "serve started something before refusing"


def non_loopback_address() -> str:
    """An address of this machine that is not loopback (the one a route to the outside would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        return str(probe.getsockname()[0])
