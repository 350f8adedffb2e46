"""`serve --app lab`: JupyterLab instead of Notebook, with the same password and the same tunnel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import PASSWORD, Sandbox
from jupyter_client import JupyterClient

from remote_agent.core.errors import MissingPrerequisite
from remote_agent.jupyter.process import require_app

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"


def test_lab_through_the_public_url(sandbox: Sandbox) -> None:
    served = sandbox.run("serve", "--app", "lab", "--detach")
    assert served.returncode == 0, served.stderr
    url = re.search(URL_LINE, served.stdout)
    assert url is not None, served.stdout
    record = sandbox.jupyter_record()
    assert record["app"] == "lab"
    cmdline = Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"jupyterlab" in cmdline

    visitor = JupyterClient(url[1])
    assert visitor.get("/lab").status_code == 302, "the password comes first"
    assert visitor.login("wrong password").status_code == 401
    assert visitor.login(PASSWORD).status_code == 302
    lab = visitor.get("/lab")
    assert lab.status_code == 200
    assert "JupyterLab" in lab.text
    home = visitor.get("/")
    assert home.status_code == 302
    assert home.headers["Location"].split("?")[0].rstrip("/").endswith("/lab"), "Lab is the default page"
    kernel = visitor.start_kernel()
    assert visitor.execute(kernel, "print(6 * 7)") == "42\n"

    status = sandbox.run("status")
    assert "(JupyterLab)" in status.stdout.splitlines()[0]
    # Asking for Notebook while Lab runs keeps Lab (and its kernels), and says how to switch.
    again = sandbox.run("serve", "--detach", "--app", "notebook")
    assert again.returncode == 0, again.stderr
    assert "keeps running with JupyterLab" in again.stderr
    assert sandbox.jupyter_record()["pid"] == record["pid"]
    # JUPYTER_APP unset: the running Lab is simply reused, without a warning.
    plain = sandbox.run("serve", "--detach")
    assert "keeps running" not in plain.stderr


def test_a_missing_app_is_a_missing_prerequisite() -> None:
    with pytest.raises(MissingPrerequisite) as caught:
        require_app("no_such_jupyter_app")
    assert caught.value.exit_code == 4
    assert "pip install no_such_jupyter_app" in " ".join(caught.value.lines())
    require_app("lab")  # installed here (the [test] extra has it)


def test_bad_app_value_exits_2(sandbox: Sandbox) -> None:
    result = sandbox.run("serve", "--detach", JUPYTER_APP="rstudio")
    assert result.returncode == 2
    assert "JUPYTER_APP must be notebook or lab" in result.stderr
    assert "Traceback" not in result.stderr
