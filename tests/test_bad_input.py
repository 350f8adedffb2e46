"""Every kind of bad input gets the contract's exit code and a plain message, never a traceback."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from conftest import TOKEN, Sandbox


def assert_plain_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 4, stderr
    for needle in needles:
        assert needle in stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["serve", "--port", "abc"], {}, "--port"),
        (["serve", "--port", "0"], {}, "--port"),
        (["serve", "--tunnel", "carrier-pigeon"], {}, "--tunnel"),
        (["serve", "--no-such-flag"], {}, "--no-such-flag"),
        (["frobnicate"], {}, "frobnicate"),
        (["serve", "--root-dir", "/no/such/dir"], {}, "/no/such/dir"),
        (["serve", "--tunnel", "ngrok"], {"NGROK_AUTHTOKEN": None}, "NGROK_AUTHTOKEN"),
        (["serve"], {"NGROK_BASIC_AUTH": "admin"}, "NGROK_BASIC_AUTH"),
        (["serve"], {"REMOTE_AGENT_SESSION": "bad:name"}, "REMOTE_AGENT_SESSION"),
        (["serve"], {"JUPYTER_PORT": "http"}, "JUPYTER_PORT"),
        (["status"], {"REMOTE_AGENT_ENV_FILE": "/no/such/file.env"}, "REMOTE_AGENT_ENV_FILE"),
        (["password"], {}, "--stdin"),
    ],
)
def test_bad_input_exits_2(sandbox: Sandbox, args: list[str], env: dict[str, str | None], needle: str) -> None:
    result = sandbox.run(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_plain_error(result.stderr, needle)


def test_no_password_without_terminal_exits_2_and_says_what_to_do(sandbox: Sandbox) -> None:
    result = sandbox.run("serve", JUPYTER_PASSWORD=None)
    assert result.returncode == 2
    assert_plain_error(result.stderr, "JUPYTER_PASSWORD", "remote_agent password")
    assert sandbox.tmux_server_pid() is None, "nothing may start without a password"


def test_bad_env_file_value_exits_2(sandbox: Sandbox) -> None:
    (sandbox.notebooks / ".env").write_text("JUPYTER_PORT=not-a-port\n")
    result = sandbox.run("serve", JUPYTER_PORT=None)
    assert result.returncode == 2
    assert_plain_error(result.stderr, "JUPYTER_PORT")


def test_not_running_exits_3(sandbox: Sandbox) -> None:
    for command in ("status", "url"):
        result = sandbox.run(command)
        assert result.returncode == 3, command
        assert "Traceback" not in result.stderr
    status = sandbox.run("status")
    assert "Jupyter is not running" in status.stdout


def test_missing_tmux_exits_4(sandbox: Sandbox, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin-without-tmux"
    bin_dir.mkdir()
    env_path = shutil.which("env")
    assert env_path
    (bin_dir / "env").symlink_to(env_path)
    result = sandbox.run("serve", PATH=str(bin_dir))
    assert result.returncode == 4
    assert_plain_error(result.stderr, "tmux", "apt-get install")


def test_missing_ngrok_binary_exits_4(sandbox: Sandbox) -> None:
    result = sandbox.run("serve", "--detach", PYNGROK_NGROK_PATH="/no/such/ngrok")
    assert result.returncode == 4
    assert_plain_error(result.stderr, "/no/such/ngrok", "PYNGROK_NGROK_PATH")


def test_bad_token_exits_5_without_revealing_it(sandbox: Sandbox) -> None:
    token = "bad" + TOKEN
    result = sandbox.run("serve", "--detach", NGROK_AUTHTOKEN=token)
    assert result.returncode == 5, result.stdout + result.stderr
    assert_plain_error(result.stderr, "ERR_NGROK_105", "authtoken")
    assert token not in result.stdout + result.stderr
    log = (sandbox.state_dir / "keeper.log").read_text()
    assert "ERR_NGROK_105" in log
    assert token not in log
    status = sandbox.run("status", "--json")
    assert status.returncode == 3
    assert "ERR_NGROK_105" in status.stdout
    assert token not in status.stdout


def test_port_taken_by_another_program_exits_5(sandbox: Sandbox) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", sandbox.port))
        squatter.listen()
        result = sandbox.run("serve", "--detach")
    assert result.returncode == 5
    assert_plain_error(result.stderr, str(sandbox.port), "--port")
