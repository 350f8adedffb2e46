"""Jupyter's password: where the hash lives, how it is made and checked.

The hash is kept where `jupyter server password` keeps it,
`IdentityProvider.hashed_password` in jupyter_server_config.json of the user's Jupyter
config directory, so a hash the user already made is reused and either tool can change
it. Only that key is touched; the rest of the file stays as the user wrote it.
Everything else remote_agent needs from Jupyter is given on its command line (see
process.py), which beats any config file, so a tutorial's `ip = '0.0.0.0'`
cannot publish Jupyter on all interfaces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from remote_agent.core.errors import BadInput
from remote_agent.core.store import write_private

SERVER_CONFIG = "jupyter_server_config.json"
LEGACY_NOTEBOOK_CONFIG = "jupyter_notebook_config.json"
SHORT_PASSWORD = 12


def config_dir(environ: dict[str, str] | None = None) -> Path:
    """Jupyter's user config directory, as `jupyter --config-dir` prints it."""
    env = os.environ if environ is None else environ
    if env.get("JUPYTER_CONFIG_DIR"):
        return Path(env["JUPYTER_CONFIG_DIR"]).expanduser()
    return Path(env.get("HOME", "~")).expanduser() / ".jupyter"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise BadInput(
            f"Jupyter's config file {path} cannot be read: {e}.",
            "Fix or move it; remote-agent only changes its password entry.",
        ) from e
    return data if isinstance(data, dict) else {}


def password_files(directory: Path) -> list[Path]:
    """The files a password hash is looked for in (existing_hash): a change in one may change it."""
    return [directory / SERVER_CONFIG, directory / LEGACY_NOTEBOOK_CONFIG]


def existing_hash(directory: Path) -> str | None:
    """A password hash the user's Jupyter configuration already holds, if any."""
    server = _load(directory / SERVER_CONFIG)
    for section, key in (
        ("IdentityProvider", "hashed_password"),
        ("PasswordIdentityProvider", "hashed_password"),
        ("ServerApp", "password"),
    ):
        value = server.get(section, {}).get(key) if isinstance(server.get(section), dict) else None
        if isinstance(value, str) and value:
            return value
    # `jupyter notebook password` from Notebook 6 wrote here.
    legacy = _load(directory / LEGACY_NOTEBOOK_CONFIG).get("NotebookApp", {})
    value = legacy.get("password") if isinstance(legacy, dict) else None
    return value if isinstance(value, str) and value else None


def store_hash(directory: Path, hashed: str) -> Path:
    """Write the hash where Jupyter reads it; idempotent, keeps the rest of the file."""
    path = directory / SERVER_CONFIG
    data = _load(path)
    # Jupyter reads the most specific class's key, so clear stale ones that would win.
    for section, key in (("PasswordIdentityProvider", "hashed_password"), ("ServerApp", "password")):
        if isinstance(data.get(section), dict):
            data[section].pop(key, None)
            if not data[section]:
                del data[section]
    provider = data.setdefault("IdentityProvider", {})
    if provider.get("hashed_password") == hashed and path.exists():
        return path
    provider["hashed_password"] = hashed
    directory.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(data, indent=2) + "\n")
    return path


def hash_password(password: str) -> str:
    """A salted argon2 hash, made by jupyter_server as Jupyter expects it."""
    from jupyter_server.auth.security import passwd

    return str(passwd(password))  # type: ignore[no-untyped-call]


def check_password(hashed: str, password: str) -> bool:
    if hashed.startswith("argon2:"):
        # argon2-cffi directly: importing jupyter_server costs a second.
        import argon2
        import argon2.exceptions

        try:
            return bool(argon2.PasswordHasher().verify(hashed[len("argon2:") :], password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    from jupyter_server.auth.security import passwd_check

    return bool(passwd_check(hashed, password))  # type: ignore[no-untyped-call]


# Settings the login's protections depend on. remote-agent fixes each on Jupyter's command
# line (process.server_args), which beats any config file; `doctor` names those a
# user's config sets, since a Jupyter started otherwise would run with them.
PROTECTION_KEYS = (
    "disable_check_xsrf",
    "allow_origin",
    "allow_origin_pat",
    "allow_credentials",
    "login_handler_class",
    "logout_handler_class",
    "identity_provider_class",
    "tornado_settings",
    "token",
    "password_required",
    "allow_password_change",
    "trust_xheaders",
    "ip",
)
_CONFIG_NAMES = ("jupyter_server_config", LEGACY_NOTEBOOK_CONFIG.removesuffix(".json"), "jupyter_lab_config")


def _config_files(directory: Path) -> list[Path]:
    files = [directory / f"{name}{ext}" for name in _CONFIG_NAMES for ext in (".json", ".py")]
    files += sorted((directory / "jupyter_server_config.d").glob("*.json"))
    return [f for f in files if f.is_file()]


def protection_overrides(directory: Path) -> list[tuple[str, Path]]:
    """(`Section.key`, file) for each protection setting the user's Jupyter config sets."""
    import re

    found: list[tuple[str, Path]] = []
    pattern = re.compile(r"^\s*c\.(\w+)\.(" + "|".join(PROTECTION_KEYS) + r")\s*=", re.MULTILINE)
    for path in _config_files(directory):
        if path.suffix == ".py":
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            found += [(f"{m[1]}.{m[2]}", path) for m in pattern.finditer(text)]
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for section, values in data.items() if isinstance(data, dict) else []:
            if isinstance(values, dict):
                found += [(f"{section}.{key}", path) for key in values if key in PROTECTION_KEYS]
    return found
