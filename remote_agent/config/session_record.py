"""session.json and session-secrets.json: the settings a session was started with. This module is their only writer.

Secret values are kept apart, in the second 0600 file, so that the first can be shown and
compared freely. the first release kept no session record, only the notebook directory in
remembered.json: that is read once, as the session, and removed when the record is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remote_agent.core.home import Home
from remote_agent.core.records import Record
from remote_agent.core.store import read_json


@dataclass
class SessionRecord(Record):
    """The settings a session was started with; they hold until `stop`, whatever runs now.

    `given` holds what the user set on purpose (flags, variables present in the environment)
    at any serve of the session; `applied`, every setting's value as last applied. Both map
    setting keys (.env names) to their text.
    """

    VERSION = 1

    env_file: str | None = None  # the session's .env
    given: dict[str, str] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    version: int = VERSION


@dataclass
class SessionSecrets(Record):
    """The secret settings of the session, by the same keys."""

    VERSION = 1

    given: dict[str, str] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    version: int = VERSION


def read(home: Home, secret_keys: tuple[str, ...]) -> SessionRecord | None:
    record = SessionRecord.load(home.session_record)
    if record is None:
        return _from_remembered(home)
    record.given = {k: v for k, v in record.given.items() if k not in secret_keys}
    record.applied = {k: v for k, v in record.applied.items() if k not in secret_keys}
    secrets = SessionSecrets.load(home.session_secrets) or SessionSecrets()
    record.given.update({k: v for k, v in secrets.given.items() if k in secret_keys})
    record.applied.update({k: v for k, v in secrets.applied.items() if k in secret_keys})
    return record


def _from_remembered(home: Home) -> SessionRecord | None:
    """The first release kept no session record: rebuild what it knew (the notebook directory)."""
    old = read_json(home.remembered)
    root = old.get("root_dir") if old else None
    if not isinstance(root, str):
        return None
    return SessionRecord(applied={"JUPYTER_ROOT_DIR": root}, started_at=None)


def write(home: Home, record: SessionRecord, secret_keys: tuple[str, ...]) -> None:
    def split(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        plain = {k: v for k, v in values.items() if k not in secret_keys}
        return plain, {k: v for k, v in values.items() if k in secret_keys}

    given, given_secret = split(record.given)
    applied, applied_secret = split(record.applied)
    SessionSecrets(given_secret, applied_secret).save(home.session_secrets)
    SessionRecord(record.env_file, given, applied, record.started_at).save(home.session_record)
    home.remembered.unlink(missing_ok=True)  # migrated


def end(home: Home) -> None:
    for path in (home.session_record, home.session_secrets, home.remembered):
        path.unlink(missing_ok=True)
