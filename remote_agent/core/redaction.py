"""Keeping secrets out of logs, messages and child environments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

# The variables that hold secrets. They are removed from every environment a child process
# (tmux, Jupyter, kernels, the keeper, the ngrok agent) inherits, never shown, and kept apart
# from the session's other settings. The settings among them are the rows of config/keys.py
# marked secret (a hook command or webhook URL may carry a token: a Slack URL is one); the
# others are other programs' own. The list lives here, not in config, because processes that
# read no settings (the supervisor, the keeper) scrub with it too; tests/test_settings.py
# checks that it and the table agree.
SECRET_ENV_KEYS = (
    "NGROK_AUTHTOKEN",
    "NGROK_API_KEY",
    "JUPYTER_PASSWORD",
    "JUPYTER_TOKEN",
    "NGROK_BASIC_AUTH",
    "REMOTE_AGENT_WEBHOOK",
    "REMOTE_AGENT_ON_URL_CHANGE",
)

MASK = "***"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-trivial secret with a mask."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of the environment without any secret variable."""
    return {k: v for k, v in environ.items() if k not in SECRET_ENV_KEYS}


class RedactingFilter:
    """A handler filter that masks secrets in every record, whichever library logged it.

    logging takes any object with a `filter` method; not subclassing logging.Filter keeps
    logging out of the commands that only need the list of secrets.
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = redact(record.getMessage(), self._secrets)
            record.args = None
        return True
