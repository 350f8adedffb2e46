"""A collaborator's browser: Debian's Chromium through the public URL, as a user clicks.

Only the ngrok cloud is replaced (tests/fakeagent); Jupyter, kernels, tmux, sshd and
Chromium are real. Screenshots of each step: test-artifacts/browser/TEST/NN-STEP.png.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import (
    Browser,
    cells,
    chromium,
    click_through_warning,
    log_in,
    new_notebook,
    open_notebook,
    output,
    prompt,
    run_in_new_cell,
    save,
    wait_for_output,
)
from conftest import PASSWORD, Sandbox, descendants, pid_alive, wait_until
from jupyter_client import JupyterClient
from pyenvs import CUDA_VALUE, PythonEnvs
from sshd import Sshd, running_sshd, serve_command, write_user_dotenv

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"
LONG_CELL_SECONDS = 20
EMPTY_NOTEBOOK = {
    "cells": [],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    failed_before = request.session.testsfailed
    with chromium(tmp_path / "chromium-profile", request.node.name) as b:
        yield b
        if request.session.testsfailed > failed_before:
            b.shoot_every_page("at-failure")


@pytest.fixture
def server(sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sshd]:
    environment = {"HOME": str(sandbox.home), "TMUX_TMPDIR": str(sandbox.tmux_dir)}
    with running_sshd(tmp_path / "sshd", environment, request.node.name) as sshd:
        yield sshd


def test_collaborator_clicks_through_the_warning_logs_in_runs_a_cell_and_comes_back_at_the_same_url(
    sandbox: Sandbox, browser: Browser
) -> None:
    serve = sandbox.follow()
    url = serve.wait_for(URL_LINE, timeout=90)[1]

    tree = browser.new_page()
    assert log_in(tree, url, PASSWORD, browser, "login-page"), "ngrok's free plan shows its warning page first"
    browser.shot(tree, "file-list")
    notebook = new_notebook(tree)
    cell = run_in_new_cell(notebook, "x = 6 * 7\nprint('x is', x)")
    wait_for_output(notebook, cell, "x is 42", timeout=60)
    saved = save(notebook, sandbox.notebooks / "Untitled.ipynb", "x is 42")
    browser.shot(notebook, "cell-output")
    assert "".join(saved["cells"][0]["source"]) == "x = 6 * 7\nprint('x is', x)"

    # ngrok's agent dies; the keeper opens the tunnel again, at the same URL (the account's dev domain).
    os.kill(sandbox.tunnel_state()["agent_pid"], signal.SIGKILL)
    serve.wait_for(rf"Tunnel back at the same URL  {re.escape(url)}$", timeout=30)

    # The same origin: the browser's cookies keep the warning page and the login away.
    again = browser.new_page()
    again.goto(url)
    assert not click_through_warning(again, browser), "the warning page's cookie lasts"
    again.wait_for_selector(".jp-DirListing-content:visible")
    browser.shot(again, "file-list-after-reopen")
    reopened = open_notebook(again, "Untitled.ipynb")
    assert "x is 42" in output(reopened, 0), "the saved output is gone"
    cell = run_in_new_cell(reopened, "print('still', x)")
    wait_for_output(reopened, cell, "still 42", timeout=60)
    browser.shot(reopened, "kernel-still-holds-x")
    on_disk = json.loads((sandbox.notebooks / "Untitled.ipynb").read_text())
    assert on_disk["cells"][0]["outputs"][0]["text"] == ["x is 42\n"]


def test_long_computation_finishes_while_the_laptop_is_away(sandbox: Sandbox, server: Sshd, browser: Browser) -> None:
    # A reserved domain (a name of the user's own): the URL survives the agent's death, so the
    # browser tab left open on the laptop reconnects by itself and receives the cell's output.
    domain = "team-notebook.ngrok.localhost"
    write_user_dotenv(sandbox, server, NGROK_DOMAIN=domain)
    first = server.terminal(server.ssh_argv("-t", command=serve_command()))
    domain_url_line = rf"Public URL\s+(http://{re.escape(domain)}:\d+)"
    url = first.wait_for(domain_url_line, timeout=90)[1]
    first.wait_for("Following the tunnel")

    # The user's own notebook, opened from the file list. (For one created with New there,
    # the file list opens a kernel connection and drops it during the handshake, which leaves
    # jupyter_server's connection count one too low, and Jupyter then never buffers its output.)
    (sandbox.notebooks / "analysis.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    tree = browser.new_page()
    log_in(tree, url, PASSWORD, browser, "login-page")
    notebook = open_notebook(tree, "analysis.ipynb")
    code = (
        "import time\nstarted = time.time()\n"
        f"time.sleep({LONG_CELL_SECONDS})\n"
        "print('done after', round(time.time() - started), 's')"
    )
    cell = run_in_new_cell(notebook, code)
    api = JupyterClient(url)
    assert api.login(PASSWORD).status_code == 302

    def running() -> list[dict[str, Any]]:
        kernels: list[dict[str, Any]] = api.get("/api/kernels").json()
        return kernels if kernels and kernels[0]["execution_state"] == "busy" else []

    [kernel] = wait_until(running, 60, "the kernel to run the cell")
    # One connection, the tab's: when it closes, Jupyter buffers the kernel's output for it.
    assert kernel["connections"] == 1, kernel
    assert prompt(notebook, cell) == "[*]:"
    browser.shot(notebook, "long-cell-running")
    jupyter_pid = sandbox.jupyter_record()["pid"]
    kernels = descendants(jupyter_pid)
    assert kernels

    # The laptop closes: the SSH client vanishes; then ngrok's agent dies too.
    first.kill()
    wait_until(lambda: not server.remote_processes("-m", "remote_agent", "serve"), 20, "the remote serve to end")
    sandbox.kill_agent_and_wait_for_reopen(30)
    # Still computing while the user is away (else this test would prove nothing).
    [kernel] = api.get("/api/kernels").json()
    assert kernel["execution_state"] == "busy", kernel

    # The user SSHes in again: the same Jupyter, the same URL, at once.
    second = server.terminal(server.ssh_argv("-t", command=serve_command()))
    assert second.wait_for(domain_url_line, timeout=30)[1] == url
    assert f"already running (pid {jupyter_pid})" in second.text
    assert all(pid_alive(pid) for pid in kernels)

    # The tab reconnects; the cell finishes with its output.
    wait_for_output(notebook, cell, f"done after {LONG_CELL_SECONDS} s", timeout=LONG_CELL_SECONDS + 90)
    wait_until(lambda: prompt(notebook, cell) == "[1]:", 30, "the cell's prompt to say it ran")
    save(notebook, sandbox.notebooks / "analysis.ipynb", f"done after {LONG_CELL_SECONDS} s")
    browser.shot(notebook, "long-cell-finished")


def test_a_user_kernel_from_the_launcher_runs_a_cell_and_draws_a_progress_bar(
    sandbox: Sandbox, browser: Browser, python_envs: PythonEnvs
) -> None:
    # The user's conda environment (conda-shaped: conda itself cannot be installed here).
    (sandbox.home / ".conda").mkdir()
    (sandbox.home / ".conda" / "environments.txt").write_text(python_envs.environments_txt())
    assert sandbox.run("serve", "--detach", "--tunnel", "ssh").returncode == 0

    tree = browser.new_page()
    log_in(tree, f"http://127.0.0.1:{sandbox.port}/", PASSWORD, browser, "login-page")
    notebook = new_notebook(tree, kernel="Python 3.11 (conda: ml)")
    browser.shot(notebook, "conda-kernel-picked")
    cell = run_in_new_cell(
        notebook, "import os, ra_only_in_ml\nprint(ra_only_in_ml.WHERE, os.environ['RA_TEST_CUDA_HOME'])"
    )
    wait_for_output(notebook, cell, f"{python_envs.ml.prefix} {CUDA_VALUE}", timeout=60)

    # tqdm draws a widget; without the widgets' front end in Jupyter it would print "HBox(...)".
    cell = run_in_new_cell(notebook, "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'): pass")
    bar = cells(notebook).nth(cell).locator(".jp-OutputArea-output .widget-hprogress")
    wait_until(lambda: bar.count() == 1, 60, "tqdm's progress bar to be drawn", 0.2)
    assert "3/3" in output(notebook, cell)
    assert "HBox" not in output(notebook, cell)
    browser.shot(notebook, "tqdm-progress-bar")
