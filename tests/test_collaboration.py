"""The notebook lives on the server: output kept while no browser watches, and one document for everyone.

One real Jupyter (with the stand-in ngrok agent) serves the module; each test opens its own
notebook in Debian's Chromium. Only the ngrok cloud is replaced (tests/fakeagent).
Screenshots of each step: test-artifacts/browser/TEST/NN-STEP.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, cells, chromium, log_in, new_notebook, open_notebook, output, run_in_new_cell, save
from conftest import PASSWORD, Sandbox, serving_sandbox, wait_until
from jupyter_client import JupyterClient
from playwright.sync_api import Page, WebSocket
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pyenvs import PythonEnvs

LINES = 24
PRINT_LINES = (
    "import time\n"
    f"for i in range(1, {LINES + 1}):\n"
    "    print(f'line {i} of " + str(LINES) + "', flush=True)\n"
    "    time.sleep(0.4)\n"
    "print('all lines printed')"
)
# What tqdm prints on a terminal: one line rewritten in place with carriage returns.
PROGRESS_BAR = (
    "import sys, time\n"
    "for i in range(1, 1001):\n"
    "    sys.stdout.write(f'\\rtraining {i}/1000'); sys.stdout.flush(); time.sleep(0.002)\n"
    "print(' finished')"
)
EMPTY_NOTEBOOK = {
    "cells": [],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}
COLLABORATION_ROOM = "/api/collaboration/room/"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from serving_sandbox(tmp_path_factory, "collab")


@contextlib.contextmanager
def shots_on_failure(browser: Browser) -> Iterator[None]:
    """What each tab showed when a step failed."""
    try:
        yield
    except BaseException:
        browser.shoot_every_page("at-failure")
        raise


def public_url(box: Sandbox) -> str:
    return box.run("url").stdout.strip()


def new_file(box: Sandbox, name: str) -> Path:
    path = box.notebooks / name
    path.write_text(json.dumps(EMPTY_NOTEBOOK))
    return path


def on_disk(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def cell_text(path: Path, index: int) -> str:
    """Everything a cell's stream outputs hold in the file on disk."""
    found = on_disk(path).get("cells") or []
    if len(found) <= index:
        return ""
    return "".join("".join(o.get("text", "")) for o in found[index].get("outputs", []))


def no_dialog(page: Page) -> bool:
    return page.locator(".jp-Dialog").count() == 0


def overwrite_if_asked(page: Page, path: Path, outputs: list[str]) -> None:
    """What the README tells a user who sees JupyterLab's "File Changed" after Ctrl+S: Overwrite.

    JupyterLab asks when the file's hash on disk differs from the one its page knows. With the
    notebook on the server, the server saves it too (a second after an edit, and while a cell
    prints), and the page learns the new hash one request after the save: a Ctrl+S in between
    is asked about (jupyter-collaboration's frontend; jupytext#1447 reports it too). The
    document is the server's either way, so Overwrite must lose nothing.
    """
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        assert "has changed on disk" in dialog.inner_text(), dialog.inner_text()
        dialog.get_by_role("button", name="Overwrite").click()
        wait_until(lambda: no_dialog(page), 10, "the dialog to close", 0.2)
    saved = json.dumps(json.loads(path.read_text()))
    for text in outputs:
        assert text in saved, f"{text!r} is not in the saved notebook"
        assert text in page.locator(".jp-Notebook").inner_text(), f"{text!r} left the page"


def test_output_printed_while_every_browser_is_closed_is_in_the_file_and_in_a_new_browser(
    box: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    notebook_file = new_file(box, "train.ipynb")
    before = {p.name for p in box.notebooks.iterdir()}
    url = public_url(box)

    with chromium(tmp_path / "laptop", request.node.name) as laptop, shots_on_failure(laptop):
        tree = laptop.new_page()
        log_in(tree, url, PASSWORD, laptop, "login-page")
        page = open_notebook(tree, "train.ipynb")
        lines = run_in_new_cell(page, PRINT_LINES)
        bar = run_in_new_cell(page, PROGRESS_BAR)  # queued behind the first cell
        wait_until(lambda: "line 2 of" in output(page, lines), 60, "the cell to print", 0.2)
        laptop.shot(page, "running-when-the-laptop-closes")
    # The whole browser is gone (lid shut): nobody watches the kernel's output.

    status = json.loads(box.run("status", "--json").stdout)
    assert status["jupyter"]["collaboration"] is True
    [running] = status["jupyter"]["notebooks"]
    assert running["path"] == "train.ipynb"
    assert re.fullmatch(r"line \d+ of 24", running["last_output"]), running
    assert running["running_since"]
    table = box.run("status").stdout
    assert re.search(r"notebook\s+train\.ipynb\s+cell 1 running .*last: line \d+ of 24", table), table

    wait_until(lambda: "finished" in cell_text(notebook_file, bar), 90, "the file to hold both cells' outputs", 0.5)
    printed = cell_text(notebook_file, lines)
    assert printed.splitlines() == [f"line {i} of {LINES}" for i in range(1, LINES + 1)] + ["all lines printed"]
    saved_bar = cell_text(notebook_file, bar)
    assert saved_bar.strip() == "training 1000/1000 finished", "the bar's 1,000 updates are not one line"
    assert box.run("status", "--json").stdout.count('"notebooks": []') == 1, "no cell runs any more"

    # Nothing of this machinery lands in the user's directory (Jupyter's own checkpoints folder
    # is made on opening a notebook, with or without it); its state is private.
    assert {p.name for p in box.notebooks.iterdir()} - {".ipynb_checkpoints"} == before
    state = box.state_dir / "collaboration"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for kept in ("status-token", "sessions.json", "documents.db", "file_ids.db"):
        assert stat.S_IMODE((state / kept).stat().st_mode) == 0o600, kept

    # Another computer the next morning: a fresh browser shows everything.
    with chromium(tmp_path / "other-computer", request.node.name) as other, shots_on_failure(other):
        tree = other.new_page()
        log_in(tree, url, PASSWORD, other, "login-again")
        page = open_notebook(tree, "train.ipynb")
        wait_until(lambda: "all lines printed" in output(page, lines), 30, "the printed lines", 0.2)
        assert f"line 1 of {LINES}\nline 2 of" in output(page, lines)
        assert "training 1000/1000 finished" in output(page, bar)
        cells(page).nth(bar).scroll_into_view_if_needed()
        other.shot(page, "reopened-on-another-computer")


def test_a_tab_left_open_through_a_tunnel_drop_shows_every_line_without_a_reload(
    box: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = new_file(box, "asleep.ipynb")
    url = public_url(box)
    with chromium(tmp_path / "laptop", request.node.name) as laptop, shots_on_failure(laptop):
        tree = laptop.new_page()
        log_in(tree, url, PASSWORD, laptop, "login-page")
        page = open_notebook(tree, "asleep.ipynb")
        cell = run_in_new_cell(page, PRINT_LINES)
        wait_until(lambda: "line 2 of" in output(page, cell), 60, "the cell to print", 0.2)
        # Saved while it runs, not only when it ends: a crash would lose little.
        wait_until(lambda: "line 2 of" in cell_text(path, cell), 15, "the file to have the first lines", 0.2)
        assert "all lines printed" not in cell_text(path, cell)

        # The laptop sleeps: the tunnel's agent dies and comes back at the same URL.
        assert box.kill_agent_and_wait_for_reopen(30) == url
        wait_until(lambda: "all lines printed" in output(page, cell), 90, "the tab to show the last line", 0.2)
        shown = output(page, cell)
        assert shown.splitlines() == [f"line {i} of {LINES}" for i in range(1, LINES + 1)] + ["all lines printed"]
        assert no_dialog(page)
        laptop.shot(page, "every-line-after-the-tunnel-came-back")

        # Jupyter itself dies (kill -9) and the supervisor starts it again.
        wait_until(lambda: "all lines printed" in cell_text(path, cell), 15, "the file to have every line", 0.2)
        old_pid = box.jupyter_record()["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_until(
            lambda: (
                box.jupyter_record()["pid"] != old_pid and JupyterClient(f"http://127.0.0.1:{box.port}/").get_ok("/api")
            ),
            60,
            "Jupyter to be restarted",
            0.5,
        )
        assert cell_text(path, cell).count(f" of {LINES}") == LINES, "printed before the crash, not in the file"
        # Logins are signed with a key that only the running Jupyter holds (no login can be forged
        # from files), so the restarted Jupyter asks the tab to log in again: reloaded, it shows the
        # login page. Logged in, the notebook has every line, and what is typed reaches the file with
        # no dialog saying the file changed or the document conflicts.
        page.reload()
        page.wait_for_selector("#password_input")
        laptop.shot(page, "asked-to-log-in-after-jupyter-restarted")
        page.close()
        log_in(tree, url, PASSWORD, laptop, "login-after-restart")
        page = open_notebook(tree, "asleep.ipynb")
        dialogs = type_in_last_cell(page, "typed_after_the_restart = 1")
        wait_until(lambda: "typed_after_the_restart" in path.read_text(), 30, "the typing to reach the file", 0.5)
        dialogs += page.locator(".jp-Dialog").all_inner_texts()
        assert not [d for d in dialogs if re.search(r"(?i)changed|conflict|overwrite|reload", d)], dialogs
        assert "all lines printed" in output(page, cell)
        laptop.shot(page, "after-jupyter-restarted")


def collaboration_sockets(page: Page) -> list[WebSocket]:
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws) if COLLABORATION_ROOM in ws.url else None)
    return sockets


def join_with_link(tree: Page, link_url: str) -> Page:
    tree.goto(link_url)
    button = tree.get_by_role("button", name="Visit Site")
    tree.wait_for_selector(".jp-DirListing-content, button:has-text('Visit Site'), #join")
    if button.count():
        button.click()
    # Opening a link shows its join page; the button logs in (and takes one use).
    tree.wait_for_selector(".jp-DirListing-content, #join")
    if tree.locator("#join").count():
        tree.click("#join")
    tree.wait_for_selector(".jp-DirListing-content:visible")
    return tree


def type_in_last_cell(page: Page, code: str) -> list[str]:
    """Type into the last cell (the empty one Shift+Enter left), without running it; the dialogs closed.

    A page refused by the server says so in dialogs (its kernel is gone): they are closed first.
    """
    last = cells(page).nth(cells(page).count() - 1).locator(".cm-content")
    closed: list[str] = []

    def focused() -> bool:
        for dialog in page.locator(".jp-Dialog").all():
            closed.append(dialog.inner_text())
            dialog.locator("button").last.click()
        try:
            last.click(timeout=2000)
        except PlaywrightTimeout:
            return False
        return True

    wait_until(focused, 30, "the last cell to take the cursor", 0.2)
    page.keyboard.insert_text(code)
    wait_until(lambda: code in last.inner_text(), 10, "the typed text to show", 0.2)
    return closed


def test_owner_and_collaborator_edit_one_notebook_and_revoke_cuts_the_collaborator_off(
    box: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = new_file(box, "together.ipynb")
    link = json.loads(box.run("share", "--json", "--name", "ana").stdout)
    # One Chromium (Playwright drives one at a time), two sites with their own cookies: the owner
    # through an SSH forward's address, the collaborator through the public link.
    with chromium(tmp_path / "profile", request.node.name) as browser, shots_on_failure(browser):
        owner = ana = browser
        tree = owner.new_page()
        log_in(tree, f"http://127.0.0.1:{box.port}/", PASSWORD, owner, "owner-login-page")
        mine = open_notebook(tree, "together.ipynb")
        theirs_tree = join_with_link(browser.context.new_page(), link["url"])
        with theirs_tree.context.expect_page() as opened:
            theirs_tree.locator(".jp-DirListing-content").get_by_text("together.ipynb", exact=True).dblclick()
        theirs = opened.value
        ana_sockets = collaboration_sockets(theirs)
        theirs.wait_for_selector(".jp-Notebook .jp-Cell")

        cell = run_in_new_cell(mine, "print('from the owner', 6 * 7)")
        wait_until(lambda: "from the owner 42" in output(theirs, cell), 30, "ana to see the owner's output", 0.2)
        theirs_cell = run_in_new_cell(theirs, "print('from ana', 7 * 7)")
        wait_until(lambda: "from ana 49" in output(mine, theirs_cell), 30, "the owner to see ana's output", 0.2)
        # Ana is shown to the owner under her link's name (beside her cursor).
        ana_cursor = mine.get_by_text("ana (share link)")
        wait_until(lambda: ana_cursor.count() >= 1, 30, "the owner's page to show ana", 0.2)
        save(mine, path, "from ana 49")
        owner.shot(mine, "owner-sees-ana")
        ana.shot(theirs, "ana-sees-the-owner")
        overwrite_if_asked(mine, path, ["from the owner 42", "from ana 49"])
        assert no_dialog(theirs), "a dialog on the collaborator's page after the owner's save"
        assert ana_sockets, "ana's page opened no document connection"

        assert box.run("share", "--revoke", "ana").returncode == 0
        # (evaluate: Playwright hands the page's events over while it waits for an answer.)
        wait_until(
            lambda: theirs.evaluate("0") == 0 and all(ws.is_closed() for ws in ana_sockets),
            30,
            "ana's document connections to close",
            0.2,
        )
        type_in_last_cell(theirs, "typed_after_revoke = 1")
        ana.shot(theirs, "typing-after-revoke")
        # The owner goes on; what the owner saves afterwards holds nothing of ana's.
        run_in_new_cell(mine, "print('owner after revoke')")
        saved = save(mine, path, "owner after revoke")
        assert "typed_after_revoke" not in json.dumps(saved)
        assert "typed_after_revoke" not in mine.locator(".jp-Notebook").inner_text()
        owner.shot(mine, "owner-after-revoke")


def test_collaboration_off_serves_plain_jupyter_and_a_kernel_still_runs(
    sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    result = sandbox.run("serve", "--detach", "--tunnel", "ssh", REMOTE_AGENT_COLLABORATION="off")
    assert result.returncode == 0, result.stderr
    local = f"http://127.0.0.1:{sandbox.port}/"
    client = JupyterClient(local)
    assert client.login(PASSWORD).status_code == 302
    assert client.get("/api/collaboration/session/x").status_code == 404
    assert json.loads(sandbox.run("status", "--json").stdout)["jupyter"]["collaboration"] is False
    assert "collaboration is off" in sandbox.run("doctor").stdout

    with chromium(tmp_path / "browser", request.node.name) as browser, shots_on_failure(browser):
        tree = browser.new_page()
        log_in(tree, local, PASSWORD, browser, "login-page")
        page = new_notebook(tree)
        cell = run_in_new_cell(page, "print('plain', 6 * 7)")
        wait_until(lambda: "plain 42" in output(page, cell), 60, "the cell's output", 0.2)
        sockets = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert not [s for s in sockets if "/api/collaboration/" in s]
        browser.shot(page, "plain-jupyter")

    # A Jupyter setting: reported while Jupyter runs, applied at its next start.
    again = sandbox.run("serve", "--detach", "--tunnel", "ssh", REMOTE_AGENT_COLLABORATION="on")
    assert again.returncode == 0, again.stderr
    assert "collaboration off (REMOTE_AGENT_COLLABORATION now says on)" in again.stderr + again.stdout
    assert json.loads(sandbox.run("status", "--json").stdout)["jupyter"]["collaboration"] is False


def test_jupyterlab_keeps_what_a_users_own_kernel_printed_while_no_browser_watched(
    sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest, python_envs: PythonEnvs
) -> None:
    # The user's conda environment (conda-shaped: conda itself cannot be installed here).
    (sandbox.home / ".conda").mkdir()
    (sandbox.home / ".conda" / "environments.txt").write_text(python_envs.environments_txt())
    assert sandbox.run("serve", "--detach", "--tunnel", "ssh", "--app", "lab").returncode == 0
    offered = json.loads(sandbox.run("kernels", "--json").stdout)["kernels"]
    [ml] = [k for k in offered if k["offered"] and "conda: ml" in k["display_name"]]
    path = sandbox.notebooks / "lab.ipynb"
    spec = {"name": ml["name"], "display_name": ml["display_name"], "language": "python"}
    path.write_text(json.dumps({**EMPTY_NOTEBOOK, "metadata": {"kernelspec": spec}}))

    local = f"http://127.0.0.1:{sandbox.port}"
    with chromium(tmp_path / "browser", request.node.name) as browser, shots_on_failure(browser):
        page = browser.new_page()
        page.goto(f"{local}/lab/tree/lab.ipynb")
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        ask = "() => fetch('/api/sessions').then(r => r.json())"
        wait_until(
            lambda: [
                x for x in page.evaluate(ask) if x["path"] == "lab.ipynb" and x["kernel"]["execution_state"] == "idle"
            ],
            60,
            "the notebook's kernel to be idle",
            0.5,
        )
        cell = run_in_new_cell(page, "import ra_only_in_ml\nprint(ra_only_in_ml.WHERE)\n" + PRINT_LINES)
        wait_until(lambda: "line 2 of" in output(page, cell), 60, "the cell to print", 0.2)
        browser.shot(page, "lab-running-when-the-browser-closes")

    wait_until(lambda: "all lines printed" in cell_text(path, cell), 60, "the file to have every line", 0.5)
    assert cell_text(path, cell).splitlines() == [
        str(python_envs.ml.prefix),
        *(f"line {i} of {LINES}" for i in range(1, LINES + 1)),
        "all lines printed",
    ]


def test_the_last_output_line_is_what_a_terminal_would_show_last() -> None:
    from remote_agent.jupyter.notebook_status import last_output

    bar = {"output_type": "stream", "name": "stdout", "text": "epoch 1\nloss 0.9\r\rloss 0.231\n\n"}
    assert last_output([bar]) == "loss 0.231"
    value = {"output_type": "execute_result", "data": {"text/plain": ["array([1,\n", " 2])"]}}
    assert last_output([bar, value]) == "2])"
    error = {"output_type": "error", "ename": "KeyError", "evalue": "'x'", "traceback": []}
    assert last_output([bar, error]) == "KeyError: 'x'"
    assert last_output([]) == ""
