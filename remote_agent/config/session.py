"""A second `serve`: what changed since the session's settings were last applied, and what that does.

Pure decisions over two maps of setting text by key (the session record's `applied`, and
what this command resolved), so they are table-tested without starting anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from remote_agent.config.keys import BY_NAME, TABLE, TUNNEL_KEY
from remote_agent.config.settings import provider_of
from remote_agent.core.redaction import SECRET_ENV_KEYS

# Settings the tunnel keeper works with: a change is applied by restarting the keeper.
TUNNEL_KEYS = tuple(key.name for key in TABLE if key.level == "tunnel")
# Settings Jupyter started with: applying a change means restarting it, which ends the kernels.
JUPYTER_KEYS = tuple(key.name for key in TABLE if key.level == "jupyter")
# Settings whose change may move the public URL.
URL_KEYS = tuple(key.name for key in TABLE if key.moves_url)


@dataclass(frozen=True)
class Change:
    key: str
    before: str | None
    after: str | None

    def describe(self) -> str:
        key = BY_NAME.get(self.key)
        name = key.flag if key is not None and not key.variable and key.flag else self.key
        if self.key in SECRET_ENV_KEYS:
            what = "is now set" if self.before is None else "is no longer set" if self.after is None else "changed"
            return f"{name} {what}"
        return f"{name}: {self.before or '(not set)'} -> {self.after or '(not set)'}"


@dataclass
class Plan:
    tunnel: list[Change] = field(default_factory=list)
    jupyter: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)
    weakening: list[str] = field(default_factory=list)  # why the change would weaken the public endpoint

    @property
    def url_may_change(self) -> bool:
        return any(c.key in URL_KEYS for c in self.tunnel)


def weakenings(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What the change takes away from a public endpoint; empty when it adds or keeps protection."""
    if provider_of(before) != "ngrok":
        return []  # nothing is published: there is no endpoint to weaken
    found = []
    if provider_of(after) != "ngrok":
        if after.get(TUNNEL_KEY) == "ssh":
            found.append("--tunnel ssh closes the public URL that others may be using")
        else:
            found.append("NGROK_AUTHTOKEN is no longer set, which closes the public URL")
        return found
    for key in TABLE:
        if key.weakening and key.protects(before.get(key.name)) and not key.protects(after.get(key.name)):
            found.append(f"{key.name} is no longer set: {key.weakening}")
    return found


def compare(before: Mapping[str, str], after: Mapping[str, str]) -> Plan:
    """Sort what differs between the applied settings and the new ones by what applying it takes."""
    plan = Plan(weakening=weakenings(before, after))
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key) or None, after.get(key) or None
        if old == new:
            continue
        change = Change(key, old, new)
        if key in TUNNEL_KEYS:
            plan.tunnel.append(change)
        elif key in JUPYTER_KEYS:
            plan.jupyter.append(change)
        else:
            plan.other.append(change)
    return plan
