"""The README's commands are real: every `remote-agent` line parses, and the day-to-day ones run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import Sandbox

from remote_agent.cli import build_parser
from remote_agent.config.keys import KEYS

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def shell_lines() -> list[str]:
    """Every command line of the README's bash blocks, comments removed, split at &&."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            command = re.split(r"\s#\s", line, maxsplit=1)[0].strip()
            lines += [part.strip() for part in command.split("&&") if part.strip()]
    return lines


def agent_commands() -> list[list[str]]:
    found = []
    for line in shell_lines():
        argv = shlex.split(line)
        if argv[0] in ("remote-agent", ".venv/bin/remote-agent"):
            found.append(argv[1:])
        elif argv[:3] == [".venv/bin/python", "-m", "remote_agent"]:
            found.append(argv[3:])
    return found


def test_the_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:15])
    assert "scripts/setup.sh && .venv/bin/python -m remote_agent serve" in first_screen
    assert "scripts/test.sh" in first_screen
    for script in ("scripts/setup.sh", "scripts/test.sh", ".ci/run"):
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text(), "CI must run the README's test command"


@pytest.mark.parametrize("argv", agent_commands(), ids=" ".join)
def test_every_readme_command_parses(argv: list[str]) -> None:
    build_parser().parse_args(argv)


def test_env_example_lists_every_setting() -> None:
    example = (REPO / ".env.example").read_text()
    keys = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert set(KEYS) <= keys
    for key in KEYS:
        assert f"`{key}`" in README or key in README, f"{key} is not explained in the README"


def test_day_to_day_commands_run_as_written(sandbox: Sandbox) -> None:
    """Serve, the other commands, reconnect and stop, in the README's words."""
    assert sandbox.run("serve", "--detach").returncode == 0
    interactive = {"attach", "password", "install-service", "uninstall-service", "serve", "connect"}
    ran = []
    for argv in agent_commands():
        if argv[0] in interactive or argv[:2] == ["doctor", "--update-agent"]:
            continue  # (updating the agent may download it: tests/test_ngrok_today.py runs it on the stand-in)
        result = sandbox.run(*argv)
        assert result.returncode == 0, f"remote-agent {' '.join(argv)}: {result.stderr}"
        ran.append(argv[0])
        if argv[0] == "stop":
            assert sandbox.run("serve", "--detach").returncode == 0, "serve after the README's stop"
    assert {"status", "url", "logs", "doctor", "stop"} <= set(ran)
