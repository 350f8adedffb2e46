"""One browser tab through `connect`'s forward: it keeps working across a drop of the forward.

Real Chromium, sshd, Jupyter and kernel; screenshots in test-artifacts/browser/TEST/.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser, chromium, log_in, new_notebook, run_in_new_cell, wait_for_output
from conftest import PASSWORD, Sandbox, free_port
from sshd import Sshd, running_sshd, write_user_dotenv
from test_connect import forward_ssh, laptop_connect, wait_for_event


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    with chromium(tmp_path / "chromium-profile", request.node.name) as b:
        yield b


@pytest.fixture
def server(sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sshd]:
    environment = {"HOME": str(sandbox.home), "TMUX_TMPDIR": str(sandbox.tmux_dir)}
    with running_sshd(tmp_path / "sshd", environment, request.node.name) as sshd:
        yield sshd


def test_the_same_tab_runs_a_cell_after_the_forward_dropped(
    sandbox: Sandbox, server: Sshd, browser: Browser, tmp_path: Path
) -> None:
    write_user_dotenv(sandbox, server, NGROK_AUTHTOKEN="")
    local_port = free_port()
    connecting = laptop_connect(
        server,
        [sys.executable, "-m", "remote_agent"],
        "--json",
        "--no-browser",
        "--local-port",
        str(local_port),
        "--remote-dir",
        "~/notebooks",
        "--remote-command",
        f"{sys.executable} -m remote_agent",
        cwd=tmp_path,
    )
    local_url = wait_for_event(connecting, "connected", timeout=120)["local_url"]

    tree = browser.new_page()
    log_in(tree, local_url, PASSWORD, browser, "login-through-the-forward")
    notebook = new_notebook(tree)
    cell = run_in_new_cell(notebook, "x = 6 * 7\nprint('x is', x)")
    wait_for_output(notebook, cell, "x is 42", timeout=60)

    # The forward drops (its ssh dies) and comes back on the same port; the tab stays open.
    seen = len(connecting.lines)
    os.kill(forward_ssh(connecting), signal.SIGKILL)
    wait_for_event(connecting, "forward_down", after=seen)
    wait_for_event(connecting, "forward_up", after=seen)
    cell = run_in_new_cell(notebook, "print('still', x)")
    wait_for_output(notebook, cell, "still 42", timeout=60)
    browser.shot(notebook, "same-tab-after-the-drop")
    assert connecting.stop() == 130
