"""`install-service` / `uninstall-service`: a systemd unit that brings Jupyter and the keeper up at boot.

The unit is `Type=oneshot` with `RemainAfterExit=yes`: at boot it runs `serve --detach`
(the venv's python, in the directory install-service ran in, so `.env` is found), which
starts the tmux session and returns; systemd keeps the unit active, and with it the
session's processes. `systemctl stop` runs `remote-agent stop`. Root gets a system unit in
/etc/systemd/system; anyone else a user unit in ~/.config/systemd/user, with lingering
turned on so that it starts at boot without a login.

A system unit never runs code that someone other than root could change as root: run
through sudo, the unit runs as the user who ran sudo (`User=`); run as root otherwise, it is
refused when the python, its environment, remote-agent's code, the working directory, its
`.env` (hook commands) or the agent binary are not root's alone.

The unit file is readable by every local user, so it holds no secret: the token, the
password and the hooks stay in `.env`. `REMOTE_AGENT_SYSTEMD_DIR` puts the unit in another
directory (for tests and packaging) and leaves systemd alone: nothing is enabled.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from remote_agent.config.keys import SERVICE_UNIT_KEYS
from remote_agent.config.settings import Settings, read_env_file
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, MissingPrerequisite, RemoteAgentError, StartFailed
from remote_agent.core.file_trust import untrusted
from remote_agent.jupyter import server_config as jupyter_config

UNIT_NAME = "remote-agent.service"
UNIT_DIR_ENV = "REMOTE_AGENT_SYSTEMD_DIR"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEMCTL_TIMEOUT = 60.0
# Besides the settings (those keys.TABLE carries into the unit: never a secret, since every
# user can read the unit file): what serve and its children need to find the same files and tmux server.
CARRIED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "TMUX_TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_DATA_DIR",
    "JUPYTER_RUNTIME_DIR",
    "JUPYTER_PATH",
)


class ServiceError(RemoteAgentError):
    """systemctl ran but refused."""

    exit_code = StartFailed.exit_code


@dataclass(frozen=True)
class Target:
    """Where the unit goes and how systemctl is asked about it."""

    user_mode: bool
    directory: Path
    user: str

    @property
    def path(self) -> Path:
        return self.directory / UNIT_NAME

    @property
    def systemctl(self) -> list[str]:
        return ["systemctl", "--user"] if self.user_mode else ["systemctl"]

    @property
    def kind(self) -> str:
        return "user unit" if self.user_mode else "system unit"

    def enable_commands(self) -> list[list[str]]:
        commands = [["loginctl", "enable-linger", self.user]] if self.user_mode else []
        return [*commands, [*self.systemctl, "daemon-reload"], [*self.systemctl, "enable", UNIT_NAME]]


def target(user_flag: bool, environ: dict[str, str] | None = None) -> Target:
    env = dict(os.environ if environ is None else environ)
    user_mode = user_flag or os.geteuid() != 0
    override = env.get(UNIT_DIR_ENV)
    if override:
        directory = Path(override).expanduser()
    elif user_mode:
        config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
        directory = Path(config) / "systemd" / "user"
    else:
        directory = SYSTEM_UNIT_DIR
    return Target(user_mode, directory, env.get("USER") or getpass.getuser())


# -- the unit file ----------------------------------------------------------------


def _specifiers(value: str) -> str:
    """systemd expands %x specifiers in most settings; a literal % is %%."""
    return value.replace("%", "%%")


def exec_word(word: str) -> str:
    """One word of an Exec line: specifiers and $ escaped, quoted when it holds spaces or quotes."""
    escaped = _specifiers(word).replace("$", "$$")
    if any(c in escaped for c in " \t\"'\\;"):
        return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def environment_line(key: str, value: str) -> str:
    quoted = _specifiers(f"{key}={value}").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{quoted}"'


def carried_environment(environ: dict[str, str]) -> dict[str, str]:
    """The installing shell's non-secret settings and paths, so the boot start sees the same."""
    wanted = [*CARRIED_ENV, *SERVICE_UNIT_KEYS]
    return {k: environ[k] for k in dict.fromkeys(wanted) if environ.get(k) and "\n" not in environ[k]}


def unit_text(
    python: str, workdir: Path, environment: dict[str, str], user_mode: bool, run_as: str | None = None
) -> str:
    run = f"{exec_word(python)} -m remote_agent"
    lines = [
        "# Written by `remote-agent install-service`; `remote-agent uninstall-service` removes it.",
        "[Unit]",
        "Description=remote-agent: Jupyter in tmux, reachable through an ngrok tunnel or SSH",
    ]
    if not user_mode:  # the user manager has no network-online.target of its own
        lines.append("Wants=network-online.target")
    lines += [
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        # serve starts the tmux session and returns; the unit stays active and keeps its processes.
        "RemainAfterExit=yes",
        *([f"User={run_as}"] if run_as else []),
        f"WorkingDirectory={_specifiers(str(workdir))}",
        *(environment_line(k, v) for k, v in environment.items()),
        f"ExecStart={run} serve --detach",
        f"ExecStop={run} stop",
        # 5: the tunnel did not come up in time (no network yet, another agent holds the account).
        # Jupyter and the keeper run on and keep trying, so the unit has not failed.
        "SuccessExitStatus=5",
        "TimeoutStartSec=300",
        "TimeoutStopSec=120",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user_mode else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


# -- who the unit runs as ------------------------------------------------------


def sudo_user(environ: dict[str, str]) -> pwd.struct_passwd | None:
    """The user who ran `sudo install-service`, when this runs as root through sudo."""
    name = environ.get("SUDO_USER")
    if os.geteuid() != 0 or not name or name == "root":
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise BadInput(
            f"SUDO_USER names {name!r}, who has no account here.", "Run install-service as that user."
        ) from None


def code_run_as_root(settings: Settings, workdir: Path) -> list[Path]:
    """What a system unit running as root would run, or read commands from."""
    import remote_agent

    paths = [Path(sys.executable), Path(sys.prefix), Path(remote_agent.__file__).parent, workdir]
    if settings.env_file is not None and settings.env_file.exists():
        paths.append(settings.env_file)
    if settings.ngrok_path:
        paths.append(Path(settings.ngrok_path))
    return paths


def refuse_user_code_as_root(settings: Settings, workdir: Path) -> None:
    for path in code_run_as_root(settings, workdir):
        problem = untrusted(path, uid=0)
        if problem:
            raise BadInput(
                f"A system unit runs as root at boot, but {problem}: whoever can change it would run "
                "code as root. Not written.",
                "Run it through sudo from your own shell (`sudo .venv/bin/remote-agent install-service`: the "
                "unit then runs as you), or as yourself with --user.",
            )


# -- the commands --------------------------------------------------------------


def _password_known(settings: Settings, environ: dict[str, str] | None = None) -> bool:
    return bool(settings.jupyter_password or jupyter_config.existing_hash(jupyter_config.config_dir(environ)))


def _store_password_hash(settings: Settings, environ: dict[str, str] | None = None, owner: int | None = None) -> None:
    """A password known only to this shell is gone at boot: keep its hash where Jupyter reads it, as serve does."""
    password = settings.jupyter_password
    if not password:
        return
    directory = jupyter_config.config_dir(environ)
    current = jupyter_config.existing_hash(directory)
    if current is None or not jupyter_config.check_password(current, password):
        created = not directory.exists()
        path = jupyter_config.store_hash(directory, jupyter_config.hash_password(password))
        if owner is not None:  # written by root for the user the unit runs as: theirs
            entry = pwd.getpwuid(owner)
            os.chown(path, owner, entry.pw_gid)
            if created:
                os.chown(directory, owner, entry.pw_gid)


def _only_in_environment(settings: Settings) -> list[str]:
    """Settings known now that the boot start will not see: they are not in .env."""
    from_file = read_env_file(settings.env_file, True) if settings.env_file else {}
    known = {
        "NGROK_AUTHTOKEN": settings.ngrok_authtoken,
        "NGROK_BASIC_AUTH": settings.basic_auth,
        "REMOTE_AGENT_ON_URL_CHANGE": settings.on_url_change,
        "REMOTE_AGENT_WEBHOOK": settings.webhook,
    }
    return [key for key, value in known.items() if value and not from_file.get(key)]


def _systemd_problem(target: Target) -> str | None:
    if shutil.which("systemctl") is None:
        return "systemctl is not installed: this system does not run systemd."
    if target.user_mode and shutil.which("loginctl") is None:
        return "loginctl is not installed, and a user unit needs lingering to start at boot."
    if not Path("/run/systemd/system").is_dir():
        return "systemd is not running on this machine (PID 1 is something else; a container?)."
    return None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 1, "", f"no answer within {SYSTEMCTL_TIMEOUT:.0f} s")
    except OSError as e:
        return subprocess.CompletedProcess(argv, 1, "", str(e.strerror or e))


def _as_shell(commands: list[list[str]]) -> str:
    return " && ".join(" ".join(c) for c in commands)


def install_service(settings: Settings, console: Console, user: bool) -> int:
    where = target(user)
    environ = dict(os.environ)
    run_as = None if where.user_mode else sudo_user(environ)
    if run_as is not None:
        # The unit is the sudo user's: their home, their Jupyter config, their files.
        environ["HOME"] = run_as.pw_dir
    elif not where.user_mode and os.geteuid() == 0:
        refuse_user_code_as_root(settings, Path.cwd())
    if not _password_known(settings, environ):
        raise BadInput(
            "No Jupyter password is set, and a start at boot has no terminal to ask for one.",
            "Run `remote-agent password` once (or set JUPYTER_PASSWORD in .env), then install-service again.",
        )
    _store_password_hash(settings, environ, run_as.pw_uid if run_as else None)
    text = unit_text(
        sys.executable,
        Path.cwd(),
        carried_environment(environ),
        where.user_mode,
        run_as.pw_name if run_as else None,
    )
    try:
        before = where.path.read_text() if where.path.exists() else None
        where.directory.mkdir(parents=True, exist_ok=True)
        where.path.write_text(text)
        where.path.chmod(0o644)
    except OSError as e:
        raise BadInput(
            f"Cannot write {where.path}: {e.strerror or e}.",
            f"Run as root for a system unit, or use --user; {UNIT_DIR_ENV} names another directory.",
        ) from e
    verb = "Wrote" if before is None else ("Kept" if before == text else "Updated")
    console.line(f"{verb} {where.path} ({where.kind}).")
    as_whom = f" as {run_as.pw_name}" if run_as else " as root" if not where.user_mode else ""
    console.line(f"At boot it runs `{sys.executable} -m remote_agent serve --detach`{as_whom} in {Path.cwd()}.")
    for key in _only_in_environment(settings):
        console.warn(
            f"{key} is set in this shell but not in .env; the start at boot will not see it. "
            "Put it in .env (unit files are readable by every user, so it is not copied there)."
        )
    if os.environ.get(UNIT_DIR_ENV):
        console.line(f"Not enabled: {UNIT_DIR_ENV} is set (for tests and packaging), so systemd is not asked.")
        console.line(f"To enable it: {_as_shell(where.enable_commands())}")
        return 0
    problem = _systemd_problem(where)
    if problem is not None:
        raise MissingPrerequisite(
            f"The unit is written but not enabled: {problem}",
            f"On a machine with systemd, enable it with: {_as_shell(where.enable_commands())}",
        )
    for argv in where.enable_commands():
        result = _run(argv)
        if result.returncode != 0:
            said = " ".join((result.stderr or result.stdout).split())[:300]
            raise ServiceError(
                f"The unit is written but not enabled: `{' '.join(argv)}` failed: {said or 'no message'}",
                f"Fix that, then run: {_as_shell(where.enable_commands())}",
            )
        if argv[0] == "loginctl":
            console.line(
                f"Lingering is on for {where.user} (loginctl enable-linger): your user services start at boot, "
                "without a login, and keep running after you log out."
            )
    console.line(f"Enabled: Jupyter and the tunnel come back after a reboot. Logs: {_journal(where)}")
    console.line(f"To start it through systemd now: {' '.join(where.systemctl)} start remote-agent")
    return 0


def _journal(where: Target) -> str:
    return "journalctl --user -u remote-agent" if where.user_mode else "journalctl -u remote-agent"


def uninstall_service(settings: Settings, console: Console, user: bool) -> int:
    where = target(user)
    links = [p for p in where.directory.glob(f"*.wants/{UNIT_NAME}") if p.is_symlink()]
    if not where.path.exists() and not links:
        console.line(f"There is no {where.kind} at {where.path}; nothing to remove.")
        return 0
    disabled = False
    if not os.environ.get(UNIT_DIR_ENV) and _systemd_problem(where) is None:
        result = _run([*where.systemctl, "disable", UNIT_NAME])
        disabled = result.returncode == 0
        if not disabled:
            console.warn(f"`{' '.join(where.systemctl)} disable` said: {' '.join(result.stderr.split())[:300]}")
    try:
        for link in links:  # what `enable` made, in case systemctl could not disable it
            link.unlink(missing_ok=True)
        where.path.unlink(missing_ok=True)
    except OSError as e:
        raise BadInput(f"Cannot remove {where.path}: {e.strerror or e}.", "Run it as the user who installed it.") from e
    if disabled:
        _run([*where.systemctl, "daemon-reload"])
    console.line(f"Removed {where.path}: nothing starts at boot any more.")
    console.line("Jupyter and the tunnel keep running now; `remote-agent stop` stops them.")
    if where.user_mode:
        console.line(f"Lingering stays on for {where.user}; `loginctl disable-linger {where.user}` turns it off.")
    return 0
