"""scripts/setup.sh on a system whose python3 is too old for the server side (Amazon Linux 2023's 3.9)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import REPO
from test_connect import oldest_python

TOOLS = ("bash", "dirname", "basename", "id", "rm", "sort", "tail", "grep", "sed", "env", "cat")


def test_setup_with_only_python39_says_what_to_install(tmp_path: Path) -> None:
    # A system with python3 3.9 and nothing newer, and no package manager the script knows.
    path = tmp_path / "bin"
    path.mkdir()
    (path / "python3").symlink_to(oldest_python())
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (path / tool).symlink_to(found)
    clone = tmp_path / "remote-agent"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", clone / "scripts" / "setup.sh")
    done = subprocess.run(
        [str(path / "bash"), "scripts/setup.sh"],
        cwd=clone,
        env={"PATH": str(path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert "needs Python 3.10 or newer; this system has Python 3.9" in done.stderr
    assert "sudo dnf install python3.11" in done.stderr
    assert not (clone / ".venv").exists(), "a .venv was made with a Python that cannot run the server side"
