"""Settings precedence and validation: flag > environment > .env > default, in one function."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remote_agent.config.settings import resolve
from remote_agent.core.errors import BadInput


def write_env(directory: Path, text: str, mode: int = 0o600) -> Path:
    path = directory / ".env"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("flag", "environ", "dotenv", "expected"),
    [
        (None, {}, "", 8888),
        (None, {}, "JUPYTER_PORT=9001\n", 9001),
        (None, {"JUPYTER_PORT": "9002"}, "JUPYTER_PORT=9001\n", 9002),
        ("9003", {"JUPYTER_PORT": "9002"}, "JUPYTER_PORT=9001\n", 9003),
        (None, {"JUPYTER_PORT": ""}, "JUPYTER_PORT=9001\n", 9001),
    ],
)
def test_port_precedence(tmp_path: Path, flag: str | None, environ: dict[str, str], dotenv: str, expected: int) -> None:
    write_env(tmp_path, dotenv)
    settings = resolve({"port": flag}, {"HOME": str(tmp_path), **environ}, cwd=tmp_path)
    assert settings.port == expected


def test_dotenv_values_never_reach_the_process_environment(tmp_path: Path) -> None:
    write_env(tmp_path, "NGROK_AUTHTOKEN=from-file-token-123\nJUPYTER_PASSWORD=file-password\n")
    settings = resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path)
    assert settings.ngrok_authtoken == "from-file-token-123"
    assert settings.provider == "ngrok"
    # (A token exported in the shell that runs the tests is not this one.)
    assert os.environ.get("NGROK_AUTHTOKEN") != "from-file-token-123"
    assert "from-file-token-123" not in repr(settings)
    assert "file-password" not in repr(settings)


def test_env_file_named_by_variable(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.env"
    other.write_text("NGROK_DOMAIN=https://my-name.ngrok-free.app/\n")
    settings = resolve({}, {"HOME": str(tmp_path), "REMOTE_AGENT_ENV_FILE": str(other)}, cwd=tmp_path)
    assert settings.domain == "my-name.ngrok-free.app"


def test_defaults(tmp_path: Path) -> None:
    settings = resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path)
    assert settings.provider == "ssh"
    assert settings.session == "remote-agent"
    assert settings.home == tmp_path / ".local" / "state" / "remote-agent"
    xdg = resolve({}, {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "st")}, cwd=tmp_path)
    assert xdg.home == tmp_path / "st" / "remote-agent"


def test_exposed_env_file_is_noticed(tmp_path: Path) -> None:
    write_env(tmp_path, "JUPYTER_PORT=9000\n", mode=0o644)
    assert resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path).env_file_exposed
    (tmp_path / ".env").chmod(0o600)
    assert not resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path).env_file_exposed


@pytest.mark.parametrize(
    ("flags", "environ", "needle"),
    [
        ({"port": "abc"}, {}, "--port"),
        ({"port": "70000"}, {}, "--port"),
        ({}, {"JUPYTER_PORT": "eighty"}, "JUPYTER_PORT"),
        ({"root_dir": "/no/such/dir"}, {}, "--root-dir"),
        ({"tunnel": "ngrok"}, {}, "NGROK_AUTHTOKEN"),
        ({}, {"NGROK_BASIC_AUTH": "nocolon"}, "NGROK_BASIC_AUTH"),
        ({}, {"NGROK_BASIC_AUTH": "user:short"}, "8 characters"),
        ({}, {"REMOTE_AGENT_SESSION": "a.b"}, "REMOTE_AGENT_SESSION"),
        ({}, {"NGROK_DOMAIN": "has space.example"}, "NGROK_DOMAIN"),
        ({}, {"REMOTE_AGENT_ENV_FILE": "/no/such/.env"}, "REMOTE_AGENT_ENV_FILE"),
        ({}, {"REMOTE_AGENT_COLLABORATION": "maybe"}, "REMOTE_AGENT_COLLABORATION must be on or off"),
    ],
)
def test_bad_settings_are_bad_input(
    tmp_path: Path, flags: dict[str, object], environ: dict[str, str], needle: str
) -> None:
    with pytest.raises(BadInput) as caught:
        resolve(flags, {"HOME": str(tmp_path), **environ}, cwd=tmp_path)
    assert needle in " ".join(caught.value.lines())
    assert caught.value.exit_code == 2


def test_collaboration_is_on_unless_turned_off_and_is_a_jupyter_setting(tmp_path: Path) -> None:
    from remote_agent.config.session import compare

    assert resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path).collaboration is True
    write_env(tmp_path, "REMOTE_AGENT_COLLABORATION=off\n")
    off = resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path)
    assert off.collaboration is False
    assert resolve({}, {"HOME": str(tmp_path), "REMOTE_AGENT_COLLABORATION": "ON"}, cwd=tmp_path).collaboration
    # Changing it means restarting Jupyter (its kernels end): serve reports it rather than applying it.
    plan = compare({"REMOTE_AGENT_COLLABORATION": "on"}, off.values)
    assert [c.key for c in plan.jupyter] == ["REMOTE_AGENT_COLLABORATION"]


def record_session(home: Path, env_file: Path | None, given: dict[str, str], applied: dict[str, str]) -> None:
    from remote_agent.core.redaction import SECRET_ENV_KEYS
    from remote_agent.core.state import Home, SessionRecord

    Home(home).ensure().write_session(
        SessionRecord(str(env_file) if env_file else None, given, applied, "2026-01-01T00:00:00+00:00"),
        SECRET_ENV_KEYS,
    )


def test_a_running_session_keeps_its_env_file_and_what_was_given(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    session_env = write_env(project, "NGROK_AUTHTOKEN=tok-from-project\nNGROK_BASIC_AUTH=ana:long-password\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_env(elsewhere, "JUPYTER_PORT=9999\n")
    state = tmp_path / ".local" / "state" / "remote-agent"
    record_session(state, session_env, {"NGROK_DOMAIN": "mine.example.com", "JUPYTER_PORT": "9001"}, {})

    settings = resolve({}, {"HOME": str(tmp_path)}, cwd=elsewhere)
    assert settings.env_file == session_env
    assert settings.unread_env_file == elsewhere / ".env"
    assert settings.ngrok_authtoken == "tok-from-project"
    assert settings.basic_auth == "ana:long-password"
    assert settings.domain == "mine.example.com"  # given on purpose at an earlier serve: still holds
    assert settings.port == 9001
    # Given again now, a flag wins; a variable merely absent from this shell changes nothing.
    assert resolve({"port": "9002"}, {"HOME": str(tmp_path)}, cwd=elsewhere).port == 9002
    # An edit of the session's .env counts.
    write_env(project, "NGROK_AUTHTOKEN=tok-from-project\n")
    assert resolve({}, {"HOME": str(tmp_path)}, cwd=elsewhere).basic_auth is None


def test_secrets_of_the_session_are_kept_apart_and_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_session(state, None, {"NGROK_AUTHTOKEN": "tok-given-123", "NGROK_DOMAIN": "d.example"}, {})
    plain = (state / "session.json").read_text()
    assert "tok-given-123" not in plain
    assert "d.example" in plain
    assert (state / "session-secrets.json").stat().st_mode & 0o777 == 0o600
    settings = resolve({}, {"HOME": str(tmp_path), "REMOTE_AGENT_HOME": str(state)}, cwd=tmp_path)
    assert settings.ngrok_authtoken == "tok-given-123"
    assert settings.provider == "ngrok"


def test_a_damaged_session_record_reads_as_no_session(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "session.json").write_text('{"version": 1, "given": "not a dict", "env_file": 5}')
    settings = resolve({}, {"HOME": str(tmp_path), "REMOTE_AGENT_HOME": str(state)}, cwd=tmp_path)
    assert settings.session_record is not None
    assert settings.session_record.given == {}
    assert settings.session_record.env_file is None


def test_env_example_is_the_settings_table() -> None:
    """`.env.example` documents every setting a .env may hold, as config/keys.py describes it."""
    from remote_agent.config.keys import KEYS, env_example

    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    assert example == env_example(), "regenerate it: python -m remote_agent.config.keys > .env.example"
    assert [line.partition("=")[0] for line in example.splitlines() if line[:1].isalpha()] == list(KEYS)


def test_the_secret_settings_are_the_ones_kept_out_of_every_child() -> None:
    """A setting marked secret is scrubbed from child environments, and one scrubbed is marked secret."""
    from remote_agent.commands.service import carried_environment
    from remote_agent.config.keys import TABLE
    from remote_agent.core.redaction import SECRET_ENV_KEYS, scrubbed

    marked = {key.name for key in TABLE if key.secret}
    assert marked == {key.name for key in TABLE} & set(SECRET_ENV_KEYS)
    every = {key.name: "a-value-1234" for key in TABLE if key.variable}
    assert set(every) - set(scrubbed(every)) == marked
    assert not marked & set(carried_environment(every)), "the unit file is readable by every user"


# A valid text for each setting's variable, and another: the first in .env, the second in the environment.
TWO_VALUES = {
    "NGROK_AUTHTOKEN": ("tok-from-file-1", "tok-from-env-2"),
    "JUPYTER_PASSWORD": ("file-password", "env-password"),
    "JUPYTER_PORT": ("9001", "9002"),
    "JUPYTER_APP": ("lab", "notebook"),
    "NGROK_DOMAIN": ("a.example.com", "b.example.com"),
    "NGROK_BASIC_AUTH": ("ana:long-password-1", "ana:long-password-2"),
    "REMOTE_AGENT_SESSION": ("from-file", "from-env"),
    "REMOTE_AGENT_KERNELS": ("off", "auto"),
    "REMOTE_AGENT_COLLABORATION": ("off", "on"),
    "PYNGROK_NGROK_PATH": ("/opt/ngrok-a", "/opt/ngrok-b"),
    "REMOTE_AGENT_SSH_HOST": ("host-a.example", "host-b.example"),
    "REMOTE_AGENT_SSH_KEY": ("~/a.pem", "~/b.pem"),
    "REMOTE_AGENT_ON_URL_CHANGE": ("notify-a", "notify-b"),
    "REMOTE_AGENT_WEBHOOK": ("https://a.example/hook", "https://b.example/hook"),
    "REMOTE_AGENT_LAPTOP_PORT": ("12001", "12002"),
    "NGROK_LOGIN_RATE_LIMIT": ("20", "30"),
    "NGROK_OAUTH": ("google", "github"),
    "NGROK_OAUTH_ALLOW_EMAILS": ("a@example.com", "b@example.com"),
}


def test_every_setting_resolves_flag_over_environment_over_file_over_default(tmp_path: Path) -> None:
    """Each variable of the table reaches Settings, with the precedence of the contract."""
    from remote_agent.config.keys import TABLE

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_dirs = {**TWO_VALUES, "JUPYTER_ROOT_DIR": (str(tmp_path / "a"), str(tmp_path / "b"))}
    keys = [key for key in TABLE if key.variable and not key.location]
    assert {key.name for key in keys} == set(with_dirs), "give the new setting two values above"
    base = {"HOME": str(tmp_path), "NGROK_OAUTH": "google"}
    default = resolve({}, {"HOME": str(tmp_path)}, cwd=tmp_path)
    write_env(tmp_path, "".join(f"{name}={first}\n" for name, (first, _) in with_dirs.items()))
    from_file = resolve({}, base | {"NGROK_OAUTH": ""}, cwd=tmp_path)
    from_env = resolve({}, base | {name: second for name, (_, second) in with_dirs.items()}, cwd=tmp_path)
    for key in keys:
        assert getattr(default, key.attr) == key.default, key.name
        assert getattr(from_file, key.attr) != getattr(from_env, key.attr), key.name
        assert getattr(from_file, key.attr) != getattr(default, key.attr), key.name
        if key.dest is not None:
            flag_text = str(tmp_path / "a") if key.name == "JUPYTER_ROOT_DIR" else with_dirs[key.name][0]
            flagged = resolve({key.dest: flag_text}, base | {key.name: with_dirs[key.name][1]}, cwd=tmp_path)
            assert getattr(flagged, key.attr) == getattr(from_file, key.attr), key.flag
