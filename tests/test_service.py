"""`install-service` / `uninstall-service`: the unit file they write is one systemd accepts.

This machine (a container) has no running systemd, so enabling fails here, and that is
tested too: the unit is still written, and the command says what to run, with exit 4.
`systemd-analyze verify` (from Debian's `systemd` package) checks the unit offline.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, TOKEN, Sandbox

from remote_agent.commands.service import carried_environment, exec_word, unit_text

SYSTEMD_BOOTED = Path("/run/systemd/system").is_dir()


def verify(unit: Path, user: bool, runtime_dir: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("systemd-analyze"), (
        "systemd-analyze checks the unit: apt-get install systemd (scripts/test.sh does)"
    )
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    argv = ["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="install-service writes a system unit only when run as root")
def test_system_unit_is_valid_and_uninstall_removes_it(sandbox: Sandbox, tmp_path: Path) -> None:
    units = tmp_path / "units"
    result = sandbox.run("install-service", REMOTE_AGENT_SYSTEMD_DIR=str(units))
    assert result.returncode == 0, result.stderr
    unit = units / "remote-agent.service"
    assert f"Wrote {unit} (system unit)." in result.stdout
    assert "Not enabled: REMOTE_AGENT_SYSTEMD_DIR is set" in result.stdout
    assert "systemctl daemon-reload && systemctl enable remote-agent.service" in result.stdout
    # The token came from the environment: the unit does not carry it, and the user is told.
    assert "NGROK_AUTHTOKEN is set in this shell but not in .env" in result.stderr

    text = unit.read_text()
    assert unit.stat().st_mode & 0o777 == 0o644
    assert f"ExecStart={sys.executable} -m remote_agent serve --detach" in text
    assert f"ExecStop={sys.executable} -m remote_agent stop" in text
    assert f"WorkingDirectory={sandbox.notebooks}" in text
    assert "Type=oneshot" in text
    assert "RemainAfterExit=yes" in text
    assert "After=network-online.target" in text
    assert "WantedBy=multi-user.target" in text
    assert f'Environment="TMUX_TMPDIR={sandbox.tmux_dir}"' in text
    assert f'Environment="JUPYTER_PORT={sandbox.port}"' in text
    assert TOKEN not in text
    assert PASSWORD not in text

    checked = verify(unit, user=False, runtime_dir=tmp_path / "run")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # As `systemctl enable` would have done:
    wants = units / "multi-user.target.wants"
    wants.mkdir()
    (wants / "remote-agent.service").symlink_to(unit)
    removed = sandbox.run("uninstall-service", REMOTE_AGENT_SYSTEMD_DIR=str(units))
    assert removed.returncode == 0, removed.stderr
    assert f"Removed {unit}" in removed.stdout
    assert not unit.exists()
    assert not (wants / "remote-agent.service").is_symlink()
    again = sandbox.run("uninstall-service", REMOTE_AGENT_SYSTEMD_DIR=str(units))
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


@pytest.mark.skipif(SYSTEMD_BOOTED, reason="systemd runs here: this test would turn on lingering for real")
def test_user_unit_without_systemd_is_written_and_exit_4_says_what_to_run(sandbox: Sandbox, tmp_path: Path) -> None:
    unit = sandbox.home / ".config" / "systemd" / "user" / "remote-agent.service"
    no_systemctl = tmp_path / "bin"
    no_systemctl.mkdir()
    result = sandbox.run("install-service", "--user", PATH=str(no_systemctl))
    assert result.returncode == 4, result.stdout + result.stderr
    assert unit.is_file()
    assert "systemctl is not installed" in result.stderr
    assert "Traceback" not in result.stderr

    result = sandbox.run("install-service", "--user")
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"Updated {unit} (user unit)." in result.stdout, "another PATH"
    assert "The unit is written but not enabled: systemd is not running on this machine" in result.stderr
    user = os.environ.get("USER") or __import__("getpass").getuser()
    assert (
        f"loginctl enable-linger {user} && systemctl --user daemon-reload && "
        "systemctl --user enable remote-agent.service" in result.stderr
    )
    text = unit.read_text()
    assert "WantedBy=default.target" in text
    assert "Wants=network-online.target" not in text
    checked = verify(unit, user=True, runtime_dir=tmp_path / "run")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    removed = sandbox.run("uninstall-service", "--user")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists()
    assert "Lingering stays on" in removed.stdout


def test_no_password_known_refuses_with_exit_2(sandbox: Sandbox, tmp_path: Path) -> None:
    units = tmp_path / "units"
    result = sandbox.run("install-service", JUPYTER_PASSWORD=None, REMOTE_AGENT_SYSTEMD_DIR=str(units))
    assert result.returncode == 2
    assert "No Jupyter password is set" in result.stderr
    assert "remote-agent password" in result.stderr
    assert "Traceback" not in result.stderr
    assert not units.exists()


def test_a_password_from_the_environment_is_kept_as_a_hash_for_boot(sandbox: Sandbox, tmp_path: Path) -> None:
    result = sandbox.run("install-service", REMOTE_AGENT_SYSTEMD_DIR=str(tmp_path / "units"))
    assert result.returncode == 0, result.stderr
    config = (sandbox.home / ".jupyter" / "jupyter_server_config.json").read_text()
    assert "argon2:" in config
    assert PASSWORD not in config


def test_odd_characters_are_escaped_for_systemd() -> None:
    assert exec_word("/opt/my venv/bin/python") == '"/opt/my venv/bin/python"'
    assert exec_word("/opt/100%/$HOME/python") == "/opt/100%%/$$HOME/python"
    env = carried_environment(
        {"PATH": "/usr/bin", "NGROK_AUTHTOKEN": "x", "REMOTE_AGENT_WEBHOOK": "https://h/s", "A": "b"}
    )
    assert env == {"PATH": "/usr/bin"}
    text = unit_text("/usr/bin/python3", Path("/srv/50%"), {"LANG": 'C "quoted"'}, user_mode=False)
    assert "WorkingDirectory=/srv/50%%" in text
    assert 'Environment="LANG=C \\"quoted\\""' in text


@pytest.fixture
def local_user() -> Iterator[pwd.struct_passwd]:
    """A user of this machine, with a home, who runs `sudo remote-agent install-service`."""
    name = f"ra-svc-{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, timeout=30)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="install-service writes a system unit only when run as root")
def test_through_sudo_the_system_unit_runs_as_that_user(
    sandbox: Sandbox, tmp_path: Path, local_user: pwd.struct_passwd
) -> None:
    units = tmp_path / "units"
    result = sandbox.run("install-service", REMOTE_AGENT_SYSTEMD_DIR=str(units), SUDO_USER=local_user.pw_name)
    assert result.returncode == 0, result.stderr
    assert f"serve --detach` as {local_user.pw_name} in" in result.stdout
    unit = units / "remote-agent.service"
    text = unit.read_text()
    assert f"\nUser={local_user.pw_name}\n" in text
    assert f'Environment="HOME={local_user.pw_dir}"' in text
    checked = verify(unit, user=False, runtime_dir=tmp_path / "run")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The password's hash is where that user's Jupyter reads it, and theirs.
    config = Path(local_user.pw_dir) / ".jupyter" / "jupyter_server_config.json"
    assert "argon2:" in config.read_text()
    assert config.stat().st_uid == local_user.pw_uid
    assert config.parent.stat().st_uid == local_user.pw_uid


def user_owned_venv(directory: Path) -> Path:
    """A virtual environment holding remote-agent, as a user makes one, then owned by `nobody`."""
    base = Path(os.path.realpath(sys.executable))
    (directory / "bin").mkdir(parents=True)
    (directory / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n")
    (directory / "bin" / "python").symlink_to(base)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = directory / "lib" / version / "site-packages"
    site.mkdir(parents=True)
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "pyngrok").is_dir())
    (site / "remote-agent.pth").write_text(f"{ours}\n{Path(__file__).resolve().parent.parent}\n")
    subprocess.run(["chown", "-R", "nobody:nogroup", str(directory)], check=True)
    return directory / "bin" / "python"


@pytest.mark.skipif(os.geteuid() != 0, reason="install-service writes a system unit only when run as root")
def test_a_system_unit_never_runs_user_owned_code_as_root(sandbox: Sandbox, tmp_path: Path) -> None:
    units = tmp_path / "units"
    # A user's venv, installed by root without sudo: at boot root would run what that user controls.
    python = user_owned_venv(tmp_path / "venv")
    result = subprocess.run(
        [str(python), "-m", "remote_agent", "install-service"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=sandbox.notebooks,
        env=sandbox.environ(REMOTE_AGENT_SYSTEMD_DIR=str(units)),
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"A system unit runs as root at boot, but {python} is owned by nobody" in result.stderr
    assert "sudo" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (units / "remote-agent.service").exists()

    # A project directory of another user: root would run the hook commands of its .env.
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("REMOTE_AGENT_ON_URL_CHANGE=/usr/bin/true\n")
    (project / ".env").chmod(0o600)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(project)], check=True)
    result = sandbox.run("install-service", cwd=project, REMOTE_AGENT_SYSTEMD_DIR=str(units))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "A system unit runs as root at boot, but" in result.stderr
    assert "is owned by nobody" in result.stderr
    assert not (units / "remote-agent.service").exists()
