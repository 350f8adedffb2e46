"""`share`: links that log a collaborator in without the owner's password; `--list`, `--revoke NAME`."""

from __future__ import annotations

import getpass
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from remote_agent.commands.runtime import Snapshot, snapshot
from remote_agent.config.settings import Settings
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, ExitCode
from remote_agent.core.home import Home
from remote_agent.core.ssh_hint import laptop_url, ssh_command
from remote_agent.jupyter import share_links as shares
from remote_agent.jupyter.process import has_identity_provider
from remote_agent.tunnel.keeper_config import KeeperConfig

DEFAULT_LIFETIME = "24h"
LONGEST = timedelta(days=90)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(raw: str) -> timedelta:
    """90s, 30m, 8h, 7d."""
    match = _DURATION.match(raw)
    seconds = int(match[1]) * _UNITS[match[2]] if match else 0
    if seconds <= 0:
        raise BadInput(
            f"--expires must be a number and a unit, like 90s, 30m, 8h or 7d, not {raw!r}.",
            f"The default is {DEFAULT_LIFETIME}.",
        )
    if seconds > LONGEST.total_seconds():
        raise BadInput(f"--expires {raw} is longer than {LONGEST.days} days.", "Make a new link when this one ends.")
    return timedelta(seconds=seconds)


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _lifetime_words(lifetime: timedelta) -> str:
    seconds = int(lifetime.total_seconds())
    for size, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {word}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


@dataclass
class Where:
    """Where the link points and what else the collaborator needs to get there."""

    base_url: str
    notes: list[str]


def where(settings: Settings, home: Home, snap: Snapshot) -> Where:
    provider = snap.record.provider if snap.record else settings.provider
    if provider == "ssh":
        ssh = ssh_command(snap.jupyter_port, os.environ, settings.ssh_host, settings.ssh_key, settings.laptop_port)
        return Where(
            laptop_url(settings.laptop_port),
            [
                "This session has no public URL (ssh mode): the link is only useful to someone who can",
                f"SSH to this server themselves and first runs on their laptop: {ssh}",
            ],
        )
    notes: list[str] = []
    base = snap.public_url
    if base is None:
        last = (snap.tunnel.last_url or snap.tunnel.public_url) if snap.tunnel else None
        if last:
            base = last
            notes.append("The tunnel is down right now; the link works once it is back at this URL.")
        else:
            base = laptop_url(settings.laptop_port)
            notes.append("There is no public URL right now: this is the laptop URL of the SSH command.")
    config = KeeperConfig.load(home.keeper_config)
    if config is not None and config.basic_auth:
        notes.append(
            "ngrok's edge asks for a user name and password first (NGROK_BASIC_AUTH): send them those too, separately."
        )
    if config is not None and config.oauth_provider:
        who = f"; only {', '.join(config.allow_emails)} may pass" if config.allow_emails else ""
        notes.append(
            f"ngrok's edge asks them to log in with {config.oauth_provider} first{who}"
            + (" (add theirs with --allow-email)." if config.allow_emails else ".")
        )
    return Where(base if base.endswith("/") else base + "/", notes)


def jupyter_warning(snap: Snapshot) -> str | None:
    if snap.jupyter_pid is None:
        return "Jupyter is not running: the link works once `remote-agent serve` has started it."
    if not has_identity_provider(snap.jupyter_pid):
        return (
            f"The running Jupyter (pid {snap.jupyter_pid}) was started by an earlier remote-agent and does not "
            "take share links: the link works after its next start (`remote-agent stop`, then `serve`; "
            "that ends its kernels)."
        )
    return None


def link_url(base_url: str, secret: str) -> str:
    """Jupyter's login shows the join page for the secret; its button logs in and leaves for `/`."""
    return f"{base_url}login?{urlencode({'next': '/', 'token': secret})}"


def _uses_words(max_uses: int) -> str:
    return "one browser" if max_uses == 1 else f"{max_uses} browsers"


def create(settings: Settings, console: Console, name: str | None, expires: str | None, uses: int | None) -> int:
    lifetime = parse_duration(expires or DEFAULT_LIFETIME)
    if name is not None:
        shares.check_name(name)
    max_uses = shares.check_uses(uses if uses is not None else 1)
    home = Home(settings.home).ensure()
    snap = snapshot(home, settings.port)
    place = where(settings, home, snap)
    share, secret = shares.create(home.root, name, lifetime, datetime.now(timezone.utc), max_uses)
    url = link_url(place.base_url, secret)
    warning = jupyter_warning(snap)
    # With --json, stdout is the JSON alone; what a collaborator can do is still said, on stderr.
    say = console.note if console.json_mode else console.line
    if console.json_mode:
        body = {"name": share.name, "url": url, "expires_at": share.expires_at, "max_uses": share.max_uses}
        console.json(body)
        console.out.flush()
    else:
        console.line(
            f"Share link {share.name!r}, valid for {_lifetime_words(lifetime)} (until {_when(share.expires_at)}),"
            f" for {_uses_words(max_uses)}:"
        )
        console.line("")
        console.line(f"  {url}")
        console.line("")
    say("Opening it shows a page with a Join button; whoever presses it is logged in to Jupyter without")
    say(f"your password and can run any code on this server as user {getpass.getuser()!r}, with this server's")
    say("cloud credentials (e.g. its instance role). Send it only to someone you would trust with that,")
    say(f"over a private channel. It logs in {_uses_words(max_uses)} (--uses N for more).")
    for note in place.notes:
        say(note)
    say(
        f"Revoke it: remote-agent share --revoke {share.name}   (their sessions end, their kernels and terminals"
        " are shut down)"
    )
    if warning:
        console.warn(warning)
    return 0


def _state(share: shares.Share, now: datetime) -> str:
    if share.revoked:
        return "revoked"
    if share.expired(now):
        return "expired"
    return "used up" if share.used_up else "active"


@dataclass
class ShareList:
    """`share --list`: every link on record, with its state now."""

    records: list[shares.Share]
    now: datetime

    exit_code = ExitCode.OK

    def document(self) -> dict[str, Any]:
        fields = ("name", "created_at", "expires_at", "revoked", "uses", "max_uses", "last_used_at", "last_used_from")
        return {"shares": [{k: getattr(s, k) for k in fields} for s in self.records]}

    def lines(self) -> list[str]:
        if not self.records:
            return ["No share links. Make one: remote-agent share --name NAME"]
        width = max(4, *(len(s.name) for s in self.records))
        lines = [f"{'NAME':<{width}}  {'CREATED':<20}  {'EXPIRES':<20}  {'USES':<5}  {'LAST USED':<37}  STATE"]
        for s in self.records:
            last = f"{_when(s.last_used_at)} from {s.last_used_from or '?'}" if s.last_used_at else "never"
            uses = f"{s.uses}/{s.max_uses}"
            lines.append(
                f"{s.name:<{width}}  {_when(s.created_at):<20}  {_when(s.expires_at):<20}  {uses:<5}  {last:<37}"
                f"  {_state(s, self.now)}"
            )
        return lines


def list_shares(settings: Settings) -> ShareList:
    return ShareList(shares.load(settings.home), datetime.now(timezone.utc))


CLEANUP_WAIT = 20.0  # seconds for Jupyter to shut down what the link started and say so


def _cleanup_report(settings: Settings, ended: list[shares.Share]) -> list[dict[str, Any]] | str:
    """What the running Jupyter shut down of these links (it looks once a second), or why it cannot say."""
    snap = snapshot(Home(settings.home), settings.port)
    if snap.jupyter_pid is None:
        return "Jupyter is not running: no kernel or terminal of theirs runs."
    if not has_identity_provider(snap.jupyter_pid):
        return (
            f"The running Jupyter (pid {snap.jupyter_pid}) was started by an earlier remote-agent and does not shut\n"
            "down a link's kernels: `remote-agent status` lists the kernels that run."
        )
    ids = {s.id for s in ended}
    deadline = time.monotonic() + CLEANUP_WAIT
    while time.monotonic() < deadline:
        reports = [s.ended_cleanup for s in shares.load(settings.home) if s.id in ids and s.ended_cleanup]
        if len(reports) == len(ids):
            return reports
        time.sleep(0.2)
    return (
        f"Jupyter did not say within {CLEANUP_WAIT:.0f} s what it shut down of theirs: "
        "`remote-agent status` lists the kernels that run."
    )


def revoke(settings: Settings, console: Console, name: str) -> int:
    now = datetime.now(timezone.utc)
    ended = shares.revoke(settings.home, name, now)
    if not ended:
        console.line(f"The link {name!r} had already ended (revoked or expired); nothing to do.")
        return 0
    console.line(f"Revoked {name!r}: the link and every browser session opened with it are refused from now on,")
    console.line("and their open notebooks and terminals are disconnected. Jupyter and your kernels keep running.")
    reports = _cleanup_report(settings, ended)
    if isinstance(reports, str):
        console.line(reports)
    else:
        kernels = sum(len(r.get("kernels", [])) for r in reports)
        terminals = sum(len(r.get("terminals", [])) for r in reports)
        console.line(f"Shut down what they started: {kernels} kernel(s), {terminals} terminal(s).")
        still = [p for r in reports for p in r.get("still_running", [])]
        if still:
            console.line("Still running, started from their kernels or terminals (end them with kill PID):")
            for proc in still:
                console.line(f"  {proc.get('pid')}  {proc.get('command')}")
    console.line("")
    console.line(f"What revoking cannot undo: code they ran ran as you ({getpass.getuser()!r}). Files it changed,")
    console.line("a key added to ~/.ssh/authorized_keys, a crontab entry or a process that left its kernel stay,")
    console.line("and what it read (your .env, cloud credentials) is theirs. If you do not trust them, rotate:")
    console.line("the ngrok authtoken (dashboard.ngrok.com), NGROK_BASIC_AUTH's password, REMOTE_AGENT_WEBHOOK's URL,")
    console.line("your Jupyter password (`remote-agent password`), and this server's cloud credentials.")
    return 0


def check_flags(
    name: str | None, expires: str | None, list_them: bool, revoke_name: str | None, uses: int | None
) -> None:
    if list_them and revoke_name is not None:
        raise BadInput("--list and --revoke go separately.", "Run one, then the other.")
    if (list_them or revoke_name is not None) and (name is not None or expires is not None or uses is not None):
        raise BadInput("--name, --expires and --uses are for making a link.", "Drop them, or drop --list/--revoke.")


def share(
    settings: Settings,
    console: Console,
    name: str | None,
    expires: str | None,
    revoke_name: str | None,
    uses: int | None = None,
) -> int:
    """Make a link, or revoke one (`share --list` is list_shares)."""
    if revoke_name is not None:
        return revoke(settings, console, revoke_name)
    return create(settings, console, name, expires, uses)
