"""What serve tells the keeper, and where: a 0600 file, not argv or the environment.

Kept apart from the keeper's loop so that serve reads and writes it without importing
the keeper's machinery (pyngrok, the HTTP clients).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remote_agent.core.home import Home
from remote_agent.core.records import Record
from remote_agent.core.store import read_json, write_json
from remote_agent.tunnel import edge_policy


@dataclass(frozen=True)
class KeeperConfig(Record):
    """What serve tells the keeper, through a 0600 file rather than argv or environment.

    The current release wrote it without a version: that reads as version 1."""

    VERSION = 1
    UNVERSIONED = 1

    port: int
    ngrok_path: str | None  # None: pyngrok's default place
    domain: str | None = None
    basic_auth: str | None = None
    oauth_provider: str | None = None
    allow_emails: tuple[str, ...] = ()
    login_rate: int = edge_policy.DEFAULT_LOGIN_RATE
    on_url_change: str | None = None  # a command run with each new public URL (notify.py)
    webhook: str | None = None  # a URL that gets a POST with each new public URL
    # Made by the keeper when it starts (edge_secret.py); never written to the keeper's config file.
    edge_secret: str | None = field(default=None, repr=False, metadata={"stored": False})
    version: int = VERSION

    def traffic_policy(self) -> dict[str, Any] | None:
        return edge_policy.build(
            self.basic_auth, self.oauth_provider, self.allow_emails, self.login_rate, self.edge_secret
        )


def write_keeper_config(home: Home, config: KeeperConfig) -> bool:
    """Write the keeper's config; True when it changed (a running keeper must restart)."""
    if read_json(home.keeper_config) == config.to_dict():
        return False
    write_json(home.keeper_config, config.to_dict())
    return True
