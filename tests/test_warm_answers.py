"""A warm `serve --detach` and `status` are answered from their records, and never when anything they rest on changed.

One real session (tmux, Jupyter, the keeper; the fake agent stands in for ngrok's cloud),
set up as the README says: token and password in the project's .env, not in the shell. Each
test changes one thing a user changes between two serves and checks that the next serve is
the full command (the CLI loaded), says what the full command says about the change, and
that the serve after it is answered from the record again. `status` is answered from its
record only when it found nothing wrong, with what changes by the moment read anew.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, TOKEN, Sandbox, serving_sandbox, wait_until
from jupyter_client import JupyterClient
from pyenvs import venv_with_ipykernel

from remote_agent.commands import warm_answer
from remote_agent.core import fingerprints, procs
from remote_agent.core.home import Home

README_ENV: dict[str, str | None] = {"NGROK_AUTHTOKEN": None, "JUPYTER_PASSWORD": None}  # in .env, not the shell


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    for sandbox in serving_sandbox(tmp_path_factory, "warm-serve"):
        env_file = sandbox.notebooks / ".env"
        env_file.write_text(f"NGROK_AUTHTOKEN={TOKEN}\nJUPYTER_PASSWORD={PASSWORD}\n")
        env_file.chmod(0o600)
        yield sandbox


def serve(box: Sandbox, cwd: Path | None = None, **env: str | None) -> tuple[subprocess.CompletedProcess[str], bool]:
    """`serve --detach` as a user types it; and whether it was answered without loading the CLI."""
    result, quick = command(box, ["serve", "--detach"], cwd, **env)
    assert result.returncode == 0, result.stderr
    return result, quick


def command(
    box: Sandbox, words: list[str], cwd: Path | None = None, **env: str | None
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """A command as a user types it; and whether it was answered without loading the CLI."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "remote_agent", *words],
        capture_output=True,
        text=True,
        cwd=cwd or box.notebooks,
        env=box.environ(**{**README_ENV, **env}),
        timeout=120,
        check=False,
    )
    quick = "remote_agent.cli" not in result.stderr
    result.stderr = "".join(line for line in result.stderr.splitlines(True) if not line.startswith("import time:"))
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
    record = Home(box.state_dir).warm_answer("serve")
    assert record.name == warm_answer.file_name("serve")
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


def status_until_quick(box: Sandbox, *options: str, **env: str | None) -> str:
    for _ in range(3):
        result, quick = command(box, ["status", *options], None, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        if quick:
            return result.stdout
    raise AssertionError(f"three statuses in a row ran in full; the last said:\n{result.stdout}")


def timeless(table: str) -> str:
    """A status table without the times since (they move on between two looks)."""
    return re.sub(r"(uptime|age)( +)\d+ (s|min|h \d+ min|d \d+ h),", r"\1\2N,", table)


def test_status_answered_from_its_record_says_what_the_full_status_says(box: Sandbox) -> None:
    full, quick = command(box, ["status"], RA_TEST_MARK="2")
    assert not quick
    assert full.returncode == 0, full.stdout
    assert timeless(status_until_quick(box, RA_TEST_MARK="2")) == timeless(full.stdout)
    full_json, quick = command(box, ["status", "--json"], RA_TEST_MARK="3")
    assert not quick
    assert status_until_quick(box, "--json", RA_TEST_MARK="3") == full_json.stdout
    assert json.loads(full_json.stdout)["tunnel"]["public_url"] == box.tunnel_state()["public_url"]


def test_status_counts_kernels_started_since_its_record(box: Sandbox) -> None:
    status_until_quick(box)
    client = JupyterClient(f"http://127.0.0.1:{box.port}/")
    assert client.login(PASSWORD).status_code == 302
    kernel = client.start_kernel()
    try:
        assert client.execute(kernel, "print('ready')") == "ready\n"
        shown = status_until_quick(box)
        # (Busy or idle is a few looks at /proc: an idle kernel's own threads may just be awake.)
        assert any(line.startswith("  kernels   1: ") for line in shown.splitlines()), shown
        assert json.loads(status_until_quick(box, "--json"))["jupyter"]["kernels"] == 1
    finally:
        client.api("DELETE", f"/api/kernels/{kernel}")


def test_a_status_that_finds_something_wrong_is_never_answered_from_a_record(box: Sandbox) -> None:
    status_until_quick(box)
    # ngrok's service is out of reach for a while (stands in for the network): the tunnel is down.
    box.fake.start_outage(6.0)
    wait_until(lambda: box.tunnel_state().get("status") == "reconnecting", 30, "the keeper to see the outage")
    for _ in range(2):
        result, quick = command(box, ["status"])
        assert not quick
        assert result.returncode == 3
        assert "! The tunnel is down: the agent is reconnecting to ngrok." in result.stdout
    wait_until(lambda: box.tunnel_state().get("status") == "up", 60, "the tunnel to be back")
    assert "Tunnel    ngrok, " + box.tunnel_state()["public_url"] in status_until_quick(box)


def test_remote_agent_changed_in_place_is_run_in_full(box: Sandbox, tmp_path: Path) -> None:
    """An editor or `git pull` may rewrite a module where it is: the next serve runs the new code.

    The package itself is not touched here: a running session's keeper would take a module's
    new time for an upgrade and restart, under the other tests. A stand-in file, held in the
    record as a module is, is rewritten instead.
    """
    settle(box)
    record = Home(box.state_dir).warm_answer("serve")
    kept = json.loads(record.read_text())
    package = Path(warm_answer.__file__).parents[1]
    assert {str(p) for p in package.rglob("*.py")} <= set(kept["files"]), "each module is a fact"
    assert sys.executable in kept["files"]
    module = tmp_path / "module.py"
    module.write_text("VALUE = 1\n")
    kept["files"][str(module)] = fingerprints.signature(str(module))
    record.write_text(json.dumps(kept))
    assert serve(box)[1], "held as it is: still answered from the record"
    module.write_text("VALUE = 2\n")  # rewritten in place
    _, quick = serve(box)
    assert not quick


def test_a_damaged_record_is_passed_over_for_the_full_command(box: Sandbox) -> None:
    status_until_quick(box)
    record = Home(box.state_dir).warm_answer("status")
    good = json.loads(record.read_text())
    damaged = [
        {**good, "processes": {"not a pid": 1}},
        {**good, "port": 70000},
        {**good, "files": {"/tmp/\u0000": None}},
        {**good, "answer": {"rows": None}},
        {"version": good["version"]},
        [],
    ]
    for shape in damaged:
        record.write_text(json.dumps(shape))
        result, quick = command(box, ["status"])
        assert not quick, shape
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout.startswith("Jupyter   running"), result.stdout


def test_an_environment_another_user_could_now_change_is_judged_again(box: Sandbox) -> None:
    venv_with_ipykernel(box.notebooks / "shared" / ".venv", "ra_only_in_shared")
    serve(box)
    settle(box)
    project = box.notebooks / "shared"
    project.chmod(0o777)  # every user may now replace the environment: it must not be run, nor offered anew
    try:
        _, quick = serve(box)
        assert not quick
    finally:
        project.chmod(0o755)
    settle(box)


def test_nothing_is_recorded_when_the_home_changed_while_the_answer_was_made(tmp_path: Path) -> None:
    """The keeper may reopen the tunnel (a new tunnel.json) while a serve prints the URL it read."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "tunnel.json").write_text('{"public_url": "https://old.example"}')
    invocation = warm_answer.Invocation(["serve", "--detach"], str(tmp_path), {"HOME": str(tmp_path)})
    facts = warm_answer.Facts(warm_answer.home_files(str(home)))  # when the answer began
    (home / "tunnel.json").write_text('{"public_url": "https://new.example"}')  # meanwhile
    warm_answer.record(str(home), "serve", invocation, (), {"text": "Public URL  https://old.example\n"}, facts)
    assert not Home(home).warm_answer("serve").exists()
    facts = warm_answer.Facts(warm_answer.home_files(str(home)))
    warm_answer.record(str(home), "serve", invocation, (), {"text": "Public URL  https://new.example\n"}, facts)
    assert Home(home).warm_answer("serve").exists(), "unchanged meanwhile: recorded"


def test_the_serve_right_after_the_first_one_is_answered_from_its_record(sandbox: Sandbox) -> None:
    """A user who reconnects at once after starting: the cold serve left the answer a warm one gives."""
    env_file = sandbox.notebooks / ".env"
    env_file.write_text(f"NGROK_AUTHTOKEN={TOKEN}\nJUPYTER_PASSWORD={PASSWORD}\n")
    env_file.chmod(0o600)
    assert sandbox.run("serve", "--detach", env=README_ENV).returncode == 0  # the session's first serve
    assert sandbox.run("stop", env=README_ENV).returncode == 0  # an earlier day's session, ended
    cold, quick = serve(sandbox)
    assert not quick
    assert "Jupyter     started" in cold.stdout
    warm, quick = serve(sandbox)
    assert quick
    assert warm.stdout == cold.stdout.replace("Jupyter     started", "Jupyter     already running")


def test_an_environment_that_gave_no_answer_is_asked_again_by_the_next_serve(box: Sandbox) -> None:
    """A first probe may time out (a cold disk) or fail once: what it would find later is not known yet."""
    settle(box)
    broken = box.notebooks / "flaky" / ".venv" / "bin"
    broken.mkdir(parents=True)
    python = broken / "python"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    try:
        for _ in range(2):
            _, quick = serve(box)
            assert not quick
    finally:
        shutil.rmtree(box.notebooks / "flaky")
    settle(box)


def test_a_env_file_edited_while_the_settings_were_read_leaves_no_answer(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("JUPYTER_PORT=8890\n")
    words = ["serve", "--detach"]
    later = warm_answer.at_start(words, str(tmp_path), {}, [str(env_file)], None, time.time_ns() - 10**9)
    assert not later.settled, "written after the settings began to be read: they may hold the old text"
    before = warm_answer.at_start(words, str(tmp_path), {}, [str(env_file)], None, time.time_ns() + 10**9)
    assert before.settled
    assert not warm_answer.replayable("serve", later, ())
