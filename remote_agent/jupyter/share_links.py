"""The share-link record (shares.json under REMOTE_AGENT_HOME): the only module that reads or writes it.

Each link has a name, an id, when it was made and when it expires, whether it was
revoked, the SHA-256 of its secret, how often it may log someone in (`max_uses`) and how
often it did (`uses`, when and from where last), and, once it ended, what Jupyter shut
down of it (`ended_cleanup`). The secret itself is never stored: it is 32
random bytes, so a fast hash cannot be reversed by guessing, and Jupyter can check a
link at every request without argon2's tenth of a second.

`share` writes the file; Jupyter's login (login.py, share_join.py) reads it at each
request, which is how a new, revoked or expired link takes effect without a restart,
and writes it when a link is used (under the same lock, so two logins at once cannot
both take a link's last use) or when it has shut down what a revoked link started.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from remote_agent.core import times
from remote_agent.core.errors import BadInput
from remote_agent.core.home import Home
from remote_agent.core.records import BadRecord, Record, build
from remote_agent.core.store import ensure_private_dir, exclusive_lock

LOCK = "shares.lock"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}$")
# Records of links that ended this long ago are dropped at the next write.
KEEP_ENDED = timedelta(days=30)
RECENT_SECONDS = 2.0
MAX_USES = 1000


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _iso(moment: datetime) -> str:
    return times.iso(moment)


@dataclass(frozen=True)
class Share:
    id: str
    name: str
    secret_sha256: str
    created_at: str
    expires_at: str
    revoked_at: str | None = None
    max_uses: int = 1
    uses: int = 0
    last_used_at: str | None = None
    last_used_from: str | None = None
    # What Jupyter did when it saw the link end: {"at", "kernels", "terminals", "still_running"}.
    ended_cleanup: dict[str, Any] | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def used_up(self) -> bool:
        return self.uses >= self.max_uses

    def refusal(self, now: datetime) -> str | None:
        """Why this link logs no one in now: "was revoked", "has expired", "was used up"; None when it may."""
        if self.revoked:
            return "was revoked"
        if self.expired(now):
            return "has expired"
        if self.used_up:
            return "was used up"
        return None

    def expired(self, now: datetime) -> bool:
        return now >= _parse_time(self.expires_at)

    def active(self, now: datetime) -> bool:
        return not self.revoked and not self.expired(now)

    def ended_before(self, moment: datetime) -> bool:
        end = _parse_time(self.revoked_at) if self.revoked_at else _parse_time(self.expires_at)
        return end < moment

    @classmethod
    def from_dict(cls, data: Any) -> Share | None:
        """A link of the file; None for one that is damaged (it then logs no one in)."""
        if not isinstance(data, dict):
            return None
        try:
            share = build(cls, data)  # a link from before uses were counted may log in once more
            _parse_time(share.created_at)
            _parse_time(share.expires_at)
        except (BadRecord, ValueError):
            return None
        return share


@dataclass
class ShareFile(Record):
    """shares.json: every link on record. This module is its only writer."""

    VERSION = 1

    shares: list[Any] = field(default_factory=list)
    version: int = VERSION


def path(home: Path) -> Path:
    return Home(home).shares


def load(home: Path) -> list[Share]:
    """Every link on record; an unreadable or corrupt file reads as none (so no link logs in)."""
    record = ShareFile.load(path(home))
    return [s for s in (Share.from_dict(item) for item in record.shares) if s is not None] if record else []


def _save(home: Path, shares: list[Share]) -> None:
    ensure_private_dir(home)
    ShareFile([asdict(s) for s in shares]).save(path(home))


def find_by_secret(shares: list[Share], secret: str) -> Share | None:
    """The link whose secret this is, active or not (compared in constant time)."""
    digest = hash_secret(secret)
    found = None
    for share in shares:
        if hmac.compare_digest(share.secret_sha256, digest):
            found = share
    return found


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise BadInput(
            f"{name!r} is not a usable link name.",
            "Use up to 40 letters, digits, '.', '_', '@' or '-', e.g. --name ana.",
        )
    return name


def _next_free_name(shares: list[Share]) -> str:
    taken = {s.name for s in shares}
    number = 1
    while f"link-{number}" in taken:
        number += 1
    return f"link-{number}"


def check_uses(uses: int) -> int:
    if not 1 <= uses <= MAX_USES:
        raise BadInput(
            f"--uses must be between 1 and {MAX_USES}, not {uses}.",
            "It is how many times the link may log someone in (default 1: one browser).",
        )
    return uses


def create(home: Path, name: str | None, lifetime: timedelta, now: datetime, max_uses: int = 1) -> tuple[Share, str]:
    """A new link, recorded by the hash of its secret; (the record, the secret to put in the URL)."""
    with exclusive_lock(ensure_private_dir(home) / LOCK, "remote-agent share"):
        shares = [s for s in load(home) if not s.ended_before(now - KEEP_ENDED)]
        if name is None:
            name = _next_free_name([s for s in shares if s.active(now)])
        elif any(s.name == name and s.active(now) for s in shares):
            raise BadInput(
                f"A link named {name!r} is already active.",
                f"Choose another --name, or revoke it first: remote-agent share --revoke {name}",
            )
        secret = secrets.token_urlsafe(32)
        share = Share(
            id=uuid.uuid4().hex,
            name=check_name(name),
            secret_sha256=hash_secret(secret),
            created_at=_iso(now),
            expires_at=_iso(now + lifetime),
            max_uses=check_uses(max_uses),
        )
        _save(home, [*shares, share])
    return share, secret


def revoke(home: Path, name: str, now: datetime) -> list[Share]:
    """Mark every active link of that name revoked; the links revoked (empty when none was active).

    Raises BadInput when no link of that name was ever made (or its record is long gone).
    """
    with exclusive_lock(ensure_private_dir(home) / LOCK, "remote-agent share"):
        shares = load(home)
        named = [s for s in shares if s.name == name]
        if not named:
            known = sorted({s.name for s in shares if s.active(now)})
            raise BadInput(
                f"There is no share link named {name!r}.",
                ("Active links: " + ", ".join(known) + ".") if known else "There are no active links.",
            )
        ended = [s for s in named if s.active(now)]
        if ended:
            stamp = _iso(now)
            revoked_ids = {s.id for s in ended}
            shares = [Share(**{**asdict(s), "revoked_at": stamp}) if s.id in revoked_ids else s for s in shares]
            _save(home, shares)
    return ended


@dataclass(frozen=True)
class Redeemed:
    """The outcome of a login with a link: the link (None when unknown), and why it was refused, if it was."""

    share: Share | None
    refusal: str | None


def redeem(home: Path, secret: str, now: datetime, address: str) -> Redeemed:
    """Take one use of the link whose secret this is, if it may still log someone in.

    Read, check and write happen under the record's lock: two logins at the same moment
    cannot both take a link's last use.
    """
    with exclusive_lock(ensure_private_dir(home) / LOCK, "Jupyter's login", timeout=5.0):
        shares = load(home)
        share = find_by_secret(shares, secret)
        if share is None:
            return Redeemed(None, "is not known here")
        refusal = share.refusal(now)
        if refusal is not None:
            return Redeemed(share, refusal)
        used = replace(share, uses=share.uses + 1, last_used_at=_iso(now), last_used_from=address)
        _save(home, [used if s.id == share.id else s for s in shares])
    return Redeemed(used, None)


def record_cleanup(home: Path, share_id: str, report: dict[str, Any]) -> None:
    """Note what Jupyter shut down (and what still runs) of a link that ended, for `share --revoke` to tell."""
    with exclusive_lock(ensure_private_dir(home) / LOCK, "Jupyter's login", timeout=5.0):
        shares = load(home)
        if any(s.id == share_id for s in shares):
            _save(home, [replace(s, ended_cleanup=report) if s.id == share_id else s for s in shares])


class Cache:
    """The records as Jupyter's login sees them: read again only when the file changed."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._seen: tuple[int, int, int] | None = None
        self._shares: list[Share] = []

    def current(self) -> list[Share]:
        try:
            st = path(self.home).stat()
            seen: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            seen = None
        # Two writes within one tick of the file system's clock can look alike (a reused inode,
        # the same size): a file changed in the last seconds is read again, as git does.
        recent = seen is not None and time.time() - seen[0] / 1e9 < RECENT_SECONDS
        if seen != self._seen or recent:
            self._shares = load(self.home) if seen is not None else []
            self._seen = seen
        return self._shares
