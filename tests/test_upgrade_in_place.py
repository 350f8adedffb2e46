"""An upgrade in place under a running session: the package's files change, the session does not stop.

A user upgrades remote-agent (`pip install -U`, `git pull`) while Jupyter runs with their
kernels. The session was started by the flat layout, whose names live on in running
processes and files: the keeper's command line (`-m remote_agent.keeper`), the pane-death
hook script (`-m remote_agent.supervisor`), and Jupyter's recorded launch
(`remote_agent.jupyter_login....`, the `remote_agent.notebook_status` extension). After the
files are replaced by this layout's, the session must heal, serve and stop as before.

The flat layout is taken from this repository's history (the last commit before the
package had parts), so the test needs the clone's history, as CI's clone has.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from conftest import PASSWORD, Sandbox, pid_alive, wait_until
from jupyter_client import JupyterClient

from remote_agent.jupyter.running import answers

REPO = Path(__file__).resolve().parents[1]
FLAT_LAYOUT = "3deddd1"  # the last commit whose package was 47 modules side by side


def install_flat_layout(site: Path) -> None:
    """The flat layout's package in `site`, which goes first on PYTHONPATH, as an installed release would."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", FLAT_LAYOUT, "remote_agent"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert archive.returncode == 0, f"this test needs the repository's history: {archive.stderr.decode()}"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(site, filter="data")


def upgrade_in_place(site: Path) -> None:
    """Replace the installed package's files with this checkout's, under the running session."""
    shutil.rmtree(site / "remote_agent")
    shutil.copytree(REPO / "remote_agent", site / "remote_agent", ignore=shutil.ignore_patterns("__pycache__"))


def ready(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    event: dict[str, object] = next(e for e in events if e["event"] == "ready")
    return event


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_session_started_by_the_flat_layout_heals_serves_and_stops_after_an_upgrade_in_place(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    install_flat_layout(site)
    sandbox.env["PYTHONPATH"] = str(site)

    first = ready(sandbox.run("serve", "--detach", "--json"))
    old_keeper = int(sandbox.tunnel_state()["keeper_pid"])
    assert "-m remote_agent.keeper" in command_line(old_keeper), "the session was not started by the flat layout"
    assert "remote_agent.jupyter_login" in command_line(int(str(first["jupyter_pid"])))

    upgrade_in_place(site)

    # Jupyter is killed (the OOM killer): the flat layout's hook script runs the supervisor under
    # its old name, which restarts Jupyter with the recorded launch and its old class names.
    killed = int(str(first["jupyter_pid"]))
    os.kill(killed, signal.SIGKILL)

    def restarted() -> int | None:
        pid = sandbox.jupyter_record().get("pid")
        return pid if pid != killed and pid_alive(pid) and answers(sandbox.port) else None

    jupyter = int(wait_until(restarted, 90, "Jupyter to be restarted after the upgrade"))
    assert JupyterClient(f"http://127.0.0.1:{sandbox.port}/").login(PASSWORD).status_code == 302

    # The old keeper is killed: its window restarts it, and the tunnel is up again.
    os.kill(old_keeper, signal.SIGKILL)
    wait_until(
        lambda: (
            sandbox.tunnel_state().get("keeper_pid") not in (None, old_keeper)
            and sandbox.tunnel_state().get("status") == "up"
        ),
        60,
        "a keeper with the tunnel up after the upgrade",
    )

    # serve with the new code, from where SSH lands: the same Jupyter, a public URL that answers.
    again = ready(sandbox.run("serve", "--detach", "--json", cwd=sandbox.home))
    assert again["jupyter_pid"] == jupyter
    assert JupyterClient(str(again["public_url"])).login(PASSWORD).status_code == 302
    status = json.loads(sandbox.run("status", "--json").stdout)
    assert status["jupyter"]["pid"] == jupyter
    assert status["tunnel"]["public_url"] == again["public_url"]
    keeper = int(sandbox.tunnel_state()["keeper_pid"])

    stopped = sandbox.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not pid_alive(jupyter) and not pid_alive(keeper), 30, "the session's programs to end")
    assert not sandbox.fake.live_agent_pids()
    assert sandbox.tmux("has-session", "-t", "remote-agent").returncode != 0, "stopped, yet restarted"
