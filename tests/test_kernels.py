"""The user's Python environments as kernels: real venvs and a conda-shaped prefix, a real Jupyter.

The environments are built once per run (tests/pyenvs.py). Each kernel is started through
Jupyter's REST API and run over its websocket, as a notebook does.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, Sandbox, wait_until
from jupyter_client import JupyterClient
from pyenvs import CUDA_VALUE, CUDA_VARIABLE, PythonEnv, PythonEnvs, venv_with_ipykernel

from remote_agent.commands.kernels import KernelList
from remote_agent.config.settings import Settings
from remote_agent.core import procs
from remote_agent.core.console import Console
from remote_agent.jupyter import kernelspecs, python_envs
from remote_agent.jupyter.kernels import check_running_jupyter

# What a cell prints about the kernel that runs it.
ABOUT = (
    "import json, os, sys, pkgutil\n"
    "print(json.dumps({'python': sys.executable, 'path': os.environ['PATH'].split(':'),"
    f" 'cuda': os.environ.get({CUDA_VARIABLE!r}),"
    " 'has': sorted(m.name for m in pkgutil.iter_modules() if m.name.startswith('ra_only_in_'))}))"
)


def in_the_users_shell(sandbox: Sandbox, envs: PythonEnvs) -> dict[str, str | None]:
    """The user works in the project's venv (activated) and has a conda environment."""
    conda_dir = sandbox.home / ".conda"
    conda_dir.mkdir(exist_ok=True)
    (conda_dir / "environments.txt").write_text(envs.environments_txt())
    path = f"{envs.analysis.prefix / 'bin'}:{os.environ['PATH']}"
    return {"VIRTUAL_ENV": str(envs.analysis.prefix), "PATH": path}


def listing(
    sandbox: Sandbox, env: dict[str, str | None] | None = None, **more: str | None
) -> dict[str, dict[str, Any]]:
    """`kernels --json`, by interpreter."""
    result = sandbox.run("kernels", "--json", env={**(env or {}), **more})
    assert result.returncode == 0, result.stderr
    kernels: list[dict[str, Any]] = json.loads(result.stdout)["kernels"]
    assert set(kernels[0]) == {"name", "display_name", "python", "kind", "ipykernel", "offered", "fix", "skipped"}
    return {k["python"]: k for k in kernels}


def specs(client: JupyterClient) -> dict[str, Any]:
    response = client.api("GET", "/api/kernelspecs")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def run_in_kernel(client: JupyterClient, name: str) -> dict[str, Any]:
    kernel = client.start_kernel(name)
    try:
        printed = client.execute(kernel, ABOUT, timeout=60)
        about: dict[str, Any] = json.loads(printed.strip().splitlines()[-1])
        return about
    finally:
        client.api("DELETE", f"/api/kernels/{kernel}")


def assert_runs_in(about: dict[str, Any], env: PythonEnv) -> None:
    assert about["python"] == str(env.python)
    assert about["path"][0] == str(env.prefix / "bin"), "`!pip` would install elsewhere"
    assert "/usr/bin" in about["path"], "the rest of Jupyter's PATH was not kept (${PATH})"
    assert about["has"] == [env.module]


def test_user_environments_are_kernels_added_and_removed_without_restarting_jupyter(
    sandbox: Sandbox, python_envs: PythonEnvs, tmp_path: Path
) -> None:
    envs = python_envs
    shell = in_the_users_shell(sandbox, envs)
    served = sandbox.run("serve", "--detach", "--root-dir", str(envs.projects), env=shell)
    assert served.returncode == 0, served.stderr
    assert "Python 3.11 (venv: analysis) (python3, the default)" in served.stdout
    jupyter_pid = sandbox.jupyter_record()["pid"]

    # GIVEN what `kernels` reports
    found = listing(sandbox, shell)
    analysis, ml, scratch = (found[str(e.python)] for e in (envs.analysis, envs.ml, envs.scratch))
    assert analysis == {
        "name": "python3",
        "display_name": "Python 3.11 (venv: analysis)",
        "python": str(envs.analysis.python),
        "kind": "venv",
        "ipykernel": True,
        "offered": True,
        "fix": None,
        "skipped": None,
    }
    assert ml["kind"] == "conda"
    assert ml["offered"]
    assert ml["display_name"] == "Python 3.11 (conda: ml)"
    assert ml["name"].startswith("conda-ml-")
    assert scratch["offered"] is False
    assert scratch["ipykernel"] is False
    assert scratch["fix"] == f"{envs.scratch.python} -m pip install ipykernel"
    assert not any(k["kind"] == "remote-agent" for k in found.values()), "python3 is the user's Python"

    # THEN Jupyter offers the same, the user's Python as its default, and each runs in its environment
    client = JupyterClient(f"http://127.0.0.1:{sandbox.port}/")
    assert client.login(PASSWORD).status_code == 302
    offered = specs(client)
    assert offered["default"] == "python3"
    assert offered["kernelspecs"]["python3"]["spec"]["display_name"] == "Python 3.11 (venv: analysis)"
    assert ml["name"] in offered["kernelspecs"]
    assert_runs_in(run_in_kernel(client, "python3"), envs.analysis)
    in_ml = run_in_kernel(client, ml["name"])
    assert_runs_in(in_ml, envs.ml)
    assert in_ml["cuda"] == CUDA_VALUE, "conda's activate.d scripts did not run"

    # WHEN an environment without ipykernel is added: exit 2 and the command, then --install-ipykernel
    refused = sandbox.run("kernels", "add", str(envs.scratch.prefix))
    assert refused.returncode == 2
    assert f"  {envs.scratch.python} -m pip install ipykernel\n" in refused.stderr
    assert "--install-ipykernel" in refused.stderr
    added = sandbox.run("kernels", "add", str(envs.scratch.prefix), "--install-ipykernel", "--name", "scratch")
    assert added.returncode == 0, added.stderr
    assert "Added scratch: Python 3.11 (venv: scratch)" in added.stdout
    assert "scratch" in specs(client)["kernelspecs"], "not there at the next request: Jupyter must not need a restart"
    assert_runs_in(run_in_kernel(client, "scratch"), envs.scratch)

    # WHEN a discovered environment is removed, it is gone and stays hidden after another serve
    assert sandbox.run("kernels", "remove", ml["name"]).returncode == 0
    assert ml["name"] not in specs(client)["kernelspecs"]
    # ... another shell, where another project's venv is active: it is added, and is not the default
    other = venv_with_ipykernel(tmp_path / "forecast" / ".venv", "ra_only_in_forecast")
    other_shell: dict[str, str | None] = {
        "VIRTUAL_ENV": str(other.prefix),
        "PATH": f"{other.prefix / 'bin'}:{os.environ['PATH']}",
    }
    from_another_shell = sandbox.run("serve", "--detach", cwd=sandbox.home, env=other_shell)
    assert from_another_shell.returncode == 0, from_another_shell.stderr
    assert f"already running (pid {jupyter_pid})" in from_another_shell.stdout
    assert "Kernel      Python 3.11 (venv: forecast) (venv-forecast-" in from_another_shell.stdout
    after = specs(client)
    assert ml["name"] not in after["kernelspecs"]
    assert after["kernelspecs"]["python3"]["spec"]["display_name"] == "Python 3.11 (venv: analysis)"
    [forecast] = [name for name in after["kernelspecs"] if name.startswith("venv-forecast-")]
    assert_runs_in(run_in_kernel(client, forecast), other)
    assert after["kernelspecs"]["scratch"]["spec"]["display_name"] == "Python 3.11 (venv: scratch)"
    again = listing(sandbox)
    assert again[str(envs.ml.python)]["offered"] is False
    assert again[str(envs.ml.python)]["fix"] is None
    assert again[str(envs.scratch.python)]["kind"] == "added"
    assert sandbox.jupyter_record()["pid"] == jupyter_pid

    # WHEN REMOTE_AGENT_KERNELS=off, only remote-agent's own Python is offered
    off = listing(sandbox, REMOTE_AGENT_KERNELS="off")
    assert list(off.values()) == [
        {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "python": off[next(iter(off))]["python"],
            "kind": "remote-agent",
            "ipykernel": True,
            "offered": True,
            "fix": None,
            "skipped": None,
        }
    ]
    wait_until(lambda: set(specs(client)["kernelspecs"]) == {"python3"}, 10, "only python3 to be offered")
    assert specs(client)["kernelspecs"]["python3"]["spec"]["display_name"] == "Python 3 (ipykernel)"


# -- the parts, without Jupyter ------------------------------------------------------------


def touch_python(prefix: Path) -> Path:
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").touch()
    return prefix / "bin" / "python"


def test_discovery_looks_where_environments_live(tmp_path: Path) -> None:
    home, root, opt = tmp_path / "home", tmp_path / "notebooks", tmp_path / "opt"
    base = home / "miniconda3"
    (base / "conda-meta").mkdir(parents=True)
    system = tmp_path / "usr" / "bin" / "python3"
    system.parent.mkdir(parents=True)
    system.touch(mode=0o755)
    expected = [
        touch_python(tmp_path / "active"),  # the active VIRTUAL_ENV comes first
        system,  # python3 on PATH
        touch_python(tmp_path / "elsewhere" / "listed"),  # ~/.conda/environments.txt
        touch_python(base),  # a conda base and its envs/
        touch_python(base / "envs" / "torch"),
        touch_python(root / ".venv"),  # the notebook directory's venvs
        touch_python(root / "proj" / ".venv"),
        touch_python(opt / "pytorch"),  # /opt/NAME with pyvenv.cfg (the Deep Learning AMI)
    ]
    (base / "envs" / "torch" / "conda-meta").mkdir()
    (home / ".conda").mkdir()
    (home / ".conda" / "environments.txt").write_text(f"{tmp_path / 'elsewhere' / 'listed'}\n")
    (opt / "pytorch" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    touch_python(opt / "not-a-venv")
    environ = {"VIRTUAL_ENV": str(tmp_path / "active"), "PATH": str(system.parent)}

    found = python_envs.candidates(environ, home, root, opt)

    assert found == expected


def test_kernel_names_are_stable_and_jupyter_accepts_them() -> None:
    def interpreter(prefix: str) -> python_envs.Interpreter:
        return python_envs.Interpreter(f"{prefix}/bin/python", prefix, "3.11.7", True, "", False)

    one = kernelspecs.stable_name(interpreter("/home/u/Deep Stuff/.venv"))
    assert one == kernelspecs.stable_name(interpreter("/home/u/Deep Stuff/.venv"))
    assert one != kernelspecs.stable_name(interpreter("/srv/Deep Stuff/.venv"))
    assert kernelspecs.NAME_PATTERN.match(one)
    assert kernelspecs.display_name(interpreter("/usr")) == "Python 3.11 (system: /usr)"


def test_an_interpreter_is_asked_again_only_when_its_environment_changed(tmp_path: Path) -> None:
    python = touch_python(tmp_path / "env")
    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    answer = python_envs.Interpreter(str(python), str(tmp_path / "env"), "3.11.7", False, str(site), False)
    cache = python_envs.ProbeCache(tmp_path / "probes.json")
    cache.put(python, answer)
    cache.save()

    assert python_envs.ProbeCache(tmp_path / "probes.json").get(python) == answer
    (site / "ipykernel").mkdir()  # what `pip install ipykernel` does to site-packages
    assert python_envs.ProbeCache(tmp_path / "probes.json").get(python) is None


def test_serve_says_when_a_running_jupyter_does_not_read_the_kernels_folder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "state")
    folder = str(kernelspecs.data_dir(settings.home))
    old = subprocess.Popen(["sleep", "60"], env={"PATH": os.defpath})
    new = subprocess.Popen(["sleep", "60"], env={"PATH": os.defpath, "JUPYTER_PATH": f"{folder}:/x"})
    try:
        for proc in (old, new):  # read their environments once they run sleep, not mid-exec
            wait_until(lambda p=proc: procs.environ(p.pid).get("PATH") == os.defpath, 10, "sleep to start")  # type: ignore[misc]
        said = io.StringIO()
        check_running_jupyter(settings, old.pid, Console(err=said))
        assert f"Jupyter (pid {old.pid}) was started by an earlier remote-agent" in said.getvalue()
        assert "next start" in said.getvalue()
        quiet = io.StringIO()
        check_running_jupyter(settings, new.pid, Console(err=quiet))
        assert quiet.getvalue() == ""
    finally:
        for proc in (old, new):
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("kind", ["venv", "conda"])
def test_a_kernelspec_runs_its_interpreter_with_its_bin_first(tmp_path: Path, kind: str) -> None:
    prefix = tmp_path / "env"
    python = touch_python(prefix)
    if kind == "conda":
        (prefix / "conda-meta").mkdir()
        (prefix / "etc" / "conda" / "activate.d").mkdir(parents=True)
        (prefix / "etc" / "conda" / "activate.d" / "x.sh").write_text("export X=1\n")
    else:
        (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    entry = kernelspecs.Offered(str(python), str(prefix), kind, "Python 3.11 (x)")
    spec, launcher = kernelspecs.kernel_json(entry, tmp_path / "spec")
    assert spec["env"]["PATH"] == f"{prefix / 'bin'}:${{PATH}}"
    if kind == "venv":
        assert spec["argv"][0] == str(python)
        assert launcher is None
    else:
        assert launcher is not None
        assert spec["argv"][0] == "/bin/bash"
        assert launcher.rstrip().endswith(f'exec {python} -m ipykernel_launcher -f "$1"')
        # The launcher as bash runs it: activation, then the interpreter (here: one that prints X).
        (tmp_path / "spec").mkdir()
        python.write_text("#!/bin/sh\necho X=$X\n")
        python.chmod(0o755)
        (tmp_path / "spec" / kernelspecs.LAUNCHER).write_text(launcher)
        ran = subprocess.run([*spec["argv"][:2], "conn.json"], capture_output=True, text=True, check=True)
        assert ran.stdout.strip() == "X=1"
    assert sys.executable not in json.dumps(spec)


def test_the_kernels_table_says_what_to_do_with_each_environment_not_offered() -> None:
    def row(name: str, offered: bool, fix: str | None = None, skipped: str | None = None) -> dict[str, Any]:
        python = f"/srv/{name}/bin/python"
        return {
            "name": name,
            "display_name": f"Python ({name})",
            "python": python,
            "offered": offered,
            "fix": fix,
            "skipped": skipped,
        }

    listed = [
        row("python3", True),
        row("scratch", False, fix="/srv/scratch/bin/python -m pip install ipykernel"),
        row("theirs", False, fix="-", skipped="/srv/theirs is writable by others"),
        row("old", False),
    ]
    assert KernelList(listed, kernels_off=True).lines() == [
        "Jupyter offers these kernels (a page reload shows changes):",
        "  python3  Python (python3)  /srv/python3/bin/python   (default)",
        "Found without ipykernel, so not offered:",
        "  scratch  Python (scratch)  /srv/scratch/bin/python",
        "           make it a kernel: /srv/scratch/bin/python -m pip install ipykernel",
        "           then run `remote-agent kernels` again.",
        "Found but never run, because another user could have changed them:",
        "  theirs   Python (theirs)   /srv/theirs/bin/python",
        "           not run: /srv/theirs is writable by others",
        "           if you trust it: remote-agent kernels add /srv/theirs/bin/python",
        "Hidden by `kernels remove` (`remote-agent kernels add PYTHON` offers one again):",
        "  old      Python (old)      /srv/old/bin/python",
        "REMOTE_AGENT_KERNELS=off: only remote-agent's own Python is offered.",
    ]
