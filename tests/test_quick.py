"""`url` is answered from the keeper's record without loading the CLI, and says what the full command says.

The quick answer (remote_agent/commands/quick.py) and the full one must agree in every state:
a tunnel up with this home's keeper, a keeper that died, a pid that was reused by another
program, a keeper of another home, the SSH tunnel. The states are made by hand here (records
and a stand-in process that carries the keeper's name), so both answers see the same state; one
test checks a real session too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox

from remote_agent.commands.quick import TUNNEL_VERSION

URL = "https://a1b2-203-0-113-9.ngrok-free.app"


def url_command(
    home: Path, cwd: Path, *options: str, env_file: Path | None = None, home_named: bool = True
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """`remote-agent url` run as a user runs it; and whether the full CLI was loaded to answer.

    HOME is the user's whose default home is `home`; REMOTE_AGENT_HOME names it too unless not `home_named`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REMOTE_AGENT_", "XDG_"))}
    env["HOME"] = str(home.parents[2])
    if home_named:
        env["REMOTE_AGENT_HOME"] = str(home)
    if env_file is not None:
        env["REMOTE_AGENT_ENV_FILE"] = str(env_file)
    result = subprocess.run(
        [sys.executable, *options, "-m", "remote_agent", "url"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )
    return result, "remote_agent.cli" in result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "user" / ".local" / "state" / "remote-agent"  # the default home of HOME=user
    path.mkdir(parents=True, mode=0o700)
    return path


@pytest.fixture
def keeper_stand_in(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process with the keeper's module name on its command line, started for this home."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "remote_agent.tunnel.keeper"],
        stdin=subprocess.PIPE,
        env={**os.environ, "REMOTE_AGENT_HOME": str(home)},
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def write_tunnel(home: Path, keeper_pid: int, status: str = "up") -> None:
    record = {"provider": "ngrok", "status": status, "public_url": URL, "keeper_pid": keeper_pid}
    record["version"] = TUNNEL_VERSION
    (home / "tunnel.json").write_text(json.dumps(record))


Answer = subprocess.CompletedProcess[str]


def both_answers(home: Path, tmp_path: Path) -> tuple[Answer, Answer]:
    """The quick answer, and the full one (a named .env file, which may say anything, forces it)."""
    plain = tmp_path / "plain"
    plain.mkdir(exist_ok=True)
    env_file = tmp_path / "named.env"
    env_file.write_text("# nothing set here\n")
    quick, _ = url_command(home, plain)
    full, _ = url_command(home, plain, env_file=env_file)
    assert url_command(home, plain, "-X", "importtime", env_file=env_file)[1], "a named .env must go through settings"
    return quick, full


def test_url_of_a_tunnel_up_is_printed_without_loading_the_cli(
    home: Path, keeper_stand_in: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    write_tunnel(home, keeper_stand_in.pid)
    quick, full = both_answers(home, tmp_path)
    assert (quick.returncode, quick.stdout) == (0, URL + "\n")
    assert (full.returncode, full.stdout) == (0, URL + "\n")
    timed, loaded_cli = url_command(home, tmp_path / "plain", "-X", "importtime")
    assert timed.stdout == URL + "\n"
    assert not loaded_cli, "url loaded the whole CLI for an answer on record"
    # From the project, whose .env holds the token and password (as the README sets it up).
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("NGROK_AUTHTOKEN=2abc_def\nJUPYTER_PASSWORD=a long password\n")
    timed, loaded_cli = url_command(home, project, "-X", "importtime")
    assert timed.stdout == URL + "\n"
    assert not loaded_cli, "a project's .env that names no other home sent url through the settings"


def test_a_project_env_file_that_names_another_home_is_read_by_the_settings(
    home: Path, keeper_stand_in: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    write_tunnel(home, keeper_stand_in.pid)
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (project / ".env").write_text(f"REMOTE_AGENT_HOME={elsewhere}\n")
    shown, _ = url_command(home, project, home_named=False)  # the home with the tunnel is the user's default
    assert shown.returncode == 3, shown.stdout
    assert URL not in shown.stdout


@pytest.mark.parametrize("state", ["keeper died", "pid reused", "other home", "tunnel down", "ssh tunnel"])
def test_url_never_prints_a_url_the_full_command_would_not(
    state: str, home: Path, keeper_stand_in: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    if state == "keeper died":
        keeper_stand_in.kill()
        keeper_stand_in.wait(10)
        write_tunnel(home, keeper_stand_in.pid)
    elif state == "pid reused":
        write_tunnel(home, os.getpid())  # alive, but not a keeper
    elif state == "other home":
        other = home.parent / "other"
        other.mkdir()
        write_tunnel(other, keeper_stand_in.pid)
        home = other
    elif state == "tunnel down":
        write_tunnel(home, keeper_stand_in.pid, status="down")
    else:
        write_tunnel(home, keeper_stand_in.pid)
        (home / "jupyter.json").write_text(json.dumps({"provider": "ssh", "port": 8888}))
    quick, full = both_answers(home, tmp_path)
    assert quick.returncode == full.returncode == 3, (quick.stderr, full.stderr)
    assert URL not in quick.stdout + quick.stderr
    assert quick.stderr == full.stderr


def test_url_of_a_real_session_is_answered_quickly_from_where_ssh_lands(sandbox: Sandbox) -> None:
    served = sandbox.run("serve", "--detach")
    assert served.returncode == 0, served.stderr
    shown = sandbox.run("url", cwd=sandbox.home)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == sandbox.tunnel_state()["public_url"] + "\n"
    assert shown.stdout.strip() in served.stdout
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "remote_agent", "url"],
        capture_output=True,
        text=True,
        cwd=sandbox.home,
        env=sandbox.environ(),
        timeout=60,
        check=False,
    )
    assert timed.stdout == shown.stdout
    assert "remote_agent.cli" not in timed.stderr, "the keeper's record was not read as the quick answer reads it"
