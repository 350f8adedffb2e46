"""A warm `serve --detach` is answered from its record, and never when anything it rests on changed.

One real session (tmux, Jupyter, the keeper; the fake agent stands in for ngrok's cloud),
set up as the README says: token and password in the project's .env, not in the shell. Each
test changes one thing a user changes between two serves and checks that the next serve is
the full command (the CLI loaded), says what the full command says about the change, and
that the serve after it is answered from the record again.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, TOKEN, Sandbox, serving_sandbox, wait_until
from pyenvs import venv_with_ipykernel

from remote_agent.commands import warm_answer
from remote_agent.core import procs
from remote_agent.core.home import Home

README_ENV = {"NGROK_AUTHTOKEN": None, "JUPYTER_PASSWORD": None}  # in .env, not in the shell


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    for sandbox in serving_sandbox(tmp_path_factory, "warm-serve"):
        env_file = sandbox.notebooks / ".env"
        env_file.write_text(f"NGROK_AUTHTOKEN={TOKEN}\nJUPYTER_PASSWORD={PASSWORD}\n")
        env_file.chmod(0o600)
        yield sandbox


def serve(box: Sandbox, cwd: Path | None = None, **env: str | None) -> tuple[subprocess.CompletedProcess[str], bool]:
    """`serve --detach` as a user types it; and whether it was answered without loading the CLI."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "remote_agent", "serve", "--detach"],
        capture_output=True,
        text=True,
        cwd=cwd or box.notebooks,
        env=box.environ(**{**README_ENV, **env}),
        timeout=120,
        check=False,
    )
    quick = "remote_agent.cli" not in result.stderr
    result.stderr = "".join(line for line in result.stderr.splitlines(True) if not line.startswith("import time:"))
    assert result.returncode == 0, result.stderr
    return result, quick


def settle(box: Sandbox, cwd: Path | None = None, **env: str | None) -> str:
    """Serve until the answer comes from the record (the serve after a full one that said nothing new)."""
    for _ in range(3):
        result, quick = serve(box, cwd, **env)
        if quick:
            return result.stdout
    raise AssertionError(f"three serves in a row ran in full; the last said:\n{result.stdout}{result.stderr}")


def test_a_warm_serve_says_what_the_full_serve_says_without_loading_the_cli(box: Sandbox) -> None:
    full, quick = serve(box, RA_TEST_MARK="1")  # a variable the record does not know: the full command
    assert not quick
    shown = settle(box, RA_TEST_MARK="1")
    assert shown == full.stdout
    url = box.tunnel_state()["public_url"]
    assert f"Jupyter     already running (pid {box.jupyter_record()['pid']})" in shown
    assert f"Public URL  {url}" in shown
    record = Home(box.state_dir).warm_serve
    assert record.name == warm_answer.FILE
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    kept = record.read_text()
    assert TOKEN not in kept
    assert PASSWORD not in kept


def test_an_edited_env_file_is_read_again(box: Sandbox) -> None:
    settle(box)
    env_file = box.notebooks / ".env"
    env_file.write_text(env_file.read_text() + "REMOTE_AGENT_SSH_HOST=jupyter.example.org\n")
    try:
        result, quick = serve(box)
        assert not quick
        assert "@jupyter.example.org" in result.stdout
        assert "jupyter.example.org" in settle(box)
    finally:
        env_file.write_text(f"NGROK_AUTHTOKEN={TOKEN}\nJUPYTER_PASSWORD={PASSWORD}\n")
    assert "jupyter.example.org" not in serve(box)[0].stdout


def test_a_new_environment_is_offered_by_the_next_serve(box: Sandbox) -> None:
    settle(box)
    venv_with_ipykernel(box.notebooks / "forecast" / ".venv", "ra_only_in_forecast")
    result, quick = serve(box)
    assert not quick
    assert "forecast" in result.stdout
    assert "forecast" not in settle(box)


def test_a_secret_in_the_shell_is_checked_by_the_full_command_every_time(box: Sandbox) -> None:
    settle(box)
    for _ in range(2):
        _, quick = serve(box, NGROK_AUTHTOKEN=TOKEN)
        assert not quick


def test_a_serve_from_where_ssh_lands_gets_its_own_answer(box: Sandbox) -> None:
    here = settle(box)
    _, quick = serve(box, cwd=box.home)
    assert not quick
    assert settle(box, cwd=box.home) == here


def test_a_killed_jupyter_is_never_reported_as_running(box: Sandbox) -> None:
    settle(box)
    killed = box.jupyter_record()["pid"]
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: not procs.is_alive(killed), 30, "Jupyter to end")
    result, quick = serve(box)
    assert not quick
    assert f"(pid {killed})" not in result.stdout
    assert f"(pid {box.jupyter_record()['pid']})" in result.stdout
    assert f"(pid {box.jupyter_record()['pid']})" in settle(box)


def test_a_reopened_tunnel_is_read_again(box: Sandbox) -> None:
    settle(box)
    url = box.kill_agent_and_wait_for_reopen()
    result, quick = serve(box)
    assert not quick
    assert f"Public URL  {url}" in result.stdout
    assert f"Public URL  {url}" in settle(box)


def test_notebooks_saved_while_the_laptop_slept_keep_the_answer_quick(box: Sandbox) -> None:
    """Jupyter saves notebooks (and their outputs) in the notebook folder all the time: not a change."""
    settle(box)
    (box.notebooks / "train.ipynb").write_text('{"cells": []}')
    project = box.notebooks / "forecast"
    project.mkdir(exist_ok=True)
    settle(box)
    (project / "model.ipynb").write_text('{"cells": []}')
    (box.notebooks / "train.ipynb").write_text('{"cells": [], "metadata": {}}')
    _, quick = serve(box)
    assert quick
