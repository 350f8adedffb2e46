"""Jupyter's login as remote-agent runs it: the owner's password, share links, and a brake on guessing.

Jupyter loads this class through `--ServerApp.identity_provider_class` (see
process.server_args) and runs it in its own process, so nothing here may print
or import much. On top of Jupyter's password login it:
- reads the owner's password hash again whenever its file changes, so `password`
  takes effect at once, without a restart; browsers logged in with the old password
  must log in again, and their open kernel and terminal websockets are closed;
- accepts share links: opening one (`/login?token=SECRET`) shows a page whose button
  logs in and takes one of the link's uses (share_join.py); a revoked or expired link,
  and every browser session opened with it, is refused with 403, that link's open
  websockets are closed (kernels, terminals and shared documents, so nothing typed
  afterwards reaches the document), and the kernels and terminals it started are shut
  down (share_cleanup.py), while Jupyter, the owner's kernels and sessions carry on;
- signs session cookies with a key that only this process holds (mixed into Jupyter's
  cookie secret, whose file any kernel can read), so no one forges a login from files;
  a link's cookie ends with the link, and every login cookie is `SameSite=Lax`;
- slows down repeated failed logins per client (throttle.py), for the password and
  for links alike, counted apart; a client is the visitor's address only where the
  tunnel proves it, else the local user behind the connection (login_client.py), and
  `password --unlock` clears the brake without a restart;
- checks passwords (argon2, tens of milliseconds each) on a worker thread, one at a time,
  so guessing never freezes the notebooks of the owner;
- refuses requests for a Host that is neither loopback nor the session's public host
  (DNS rebinding through a laptop's `ssh -L`), and ignores a client's X-Real-Ip/X-Scheme;
- never lets a login change the owner's password, and asks browsers not to send the
  page's address (which may hold a link's secret) to other sites.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import math
import os
import secrets
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import PasswordIdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.websocket import WebSocketHandler
from traitlets import default

from remote_agent.core.edge_secret import HEADER as EDGE_HEADER
from remote_agent.core.edge_secret import EdgeSecret
from remote_agent.core.errors import RemoteAgentError
from remote_agent.core.home import Home
from remote_agent.core.store import read_json
from remote_agent.jupyter import login_client, share_cleanup, share_join
from remote_agent.jupyter import server_config as jupyter_config
from remote_agent.jupyter import share_links as shares
from remote_agent.jupyter.login_client import LOCAL, TUNNEL, Client
from remote_agent.jupyter.throttle import LINK, PASSWORD, LoginThrottle, Unlocks

WATCH_INTERVAL_MS = 1000  # how soon an ended link (or an old password) loses its open websockets
POLICY_VIOLATION = 1008  # the websocket close code for "no longer allowed"
MAX_OWNER_SESSIONS = 10_000  # the oldest owner logins are forgotten beyond this
MAX_PENDING_CHECKS = 4  # password checks waiting for the worker; more are asked to retry
BUSY_RETRY = 1.0
# Tornado settings that would turn off a check the login relies on (see _keep_protections).
PROTECTED_TORNADO_SETTINGS = (
    "xsrf_cookies",
    "disable_check_xsrf",
    "allow_origin",
    "allow_origin_pat",
    "allow_credentials",
    "allow_remote_access",
    "local_hostnames",
    "login_url",
    "identity_provider",
    "authorizer",
)


def _socket_peer(handler: web.RequestHandler) -> tuple[str, int]:
    """The address and port of the process connected to Jupyter's socket, whatever the headers say."""
    address = getattr(getattr(handler.request.connection, "context", None), "address", None)
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return "", 0


def _socket_protocol(handler: web.RequestHandler) -> str:
    """The scheme of the connection itself (Jupyter serves plain http on loopback)."""
    return str(getattr(getattr(handler.request.connection, "context", None), "_orig_protocol", "http"))


def _server_port(handler: web.RequestHandler) -> int:
    app = handler.settings.get("serverapp")
    return int(getattr(app, "port", 0) or 0)


def _mark(hashed_password: str) -> str:
    """Which password a session was opened with, without putting the hash itself in the cookie."""
    return hashlib.sha256(hashed_password.encode()).hexdigest()[:16]


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class LinkUser(User):
    """A collaborator logged in with a share link."""

    share_id: str = ""


REFUSED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{status}</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>{status}</h1><p>{reason}.</p></body></html>
"""


def _refuse(handler: web.RequestHandler, status: int, reason: str, retry_after: float = 0) -> Exception:
    """The answer to a request that must not go on, written here rather than by Jupyter's error page,
    which fails for a request refused before it knows its user (Notebook's template needs page data)."""
    handler.current_user = handler._jupyter_current_user = None  # type: ignore[attr-defined]
    if isinstance(handler, WebSocketHandler):
        return web.HTTPError(status, reason=reason)
    handler.set_status(status, reason=reason)
    if retry_after:
        handler.set_header("Retry-After", str(math.ceil(retry_after)))
    if isinstance(handler, APIHandler):
        handler.set_header("Content-Type", "application/json")
        return web.Finish(json.dumps({"message": reason}))
    handler.set_header("Content-Type", "text/html; charset=UTF-8")
    return web.Finish(REFUSED_PAGE.format(status=status, reason=html.escape(reason)))


def _too_many(handler: web.RequestHandler, wait: float, everyone: bool = False) -> Exception:
    return _refuse(handler, 429, _brake_message(wait, everyone), retry_after=wait)


def _brake_message(wait: float, everyone: bool) -> str:
    who = "on this server right now" if everyone else "from your address"
    return f"Too many failed logins {who}; try again in {math.ceil(wait)} s"


class ThrottledLoginHandler(LoginFormHandler):
    """Jupyter's login form, answering 429 while the client's address must wait."""

    @allow_unauthenticated
    def get(self) -> None:
        secret = self.get_query_argument("token", default="")
        if secret:
            share_join.show_join_page(self, self.identity_provider, secret)  # type: ignore[arg-type]
            return
        super().get()  # type: ignore[no-untyped-call]

    def _render(self, message: dict[str, str] | None = None) -> None:
        # The form posts back to this page. Under `no-referrer` a browser sends that POST with
        # `Origin: null`, which Jupyter refuses; `same-origin` still tells other sites nothing.
        self.set_header("Referrer-Policy", "same-origin")
        super()._render(message)  # type: ignore[no-untyped-call]

    def _slow_down(self, wait: float, message: str) -> None:
        self.set_status(429)
        self.set_header("Retry-After", str(math.ceil(wait)))
        self._render(message={"error": message})

    @allow_unauthenticated
    async def post(self) -> None:
        provider = self.identity_provider
        if not isinstance(provider, RemoteAgentIdentityProvider):
            super().post()  # type: ignore[no-untyped-call]
            return
        throttle, key = provider.brake_for(self)
        wait = throttle.wait(key)
        if wait > 0:
            self._slow_down(wait, _brake_message(wait, throttle.global_wait() >= wait) + ".")
            return
        verdict = await provider.check_password_off_loop(self.get_argument("password", default=""))
        if verdict is None:
            self._slow_down(BUSY_RETRY, "Busy checking other logins: try again in a second.")
            return
        self._password_verdict = verdict
        super().post()  # type: ignore[no-untyped-call]
        if self.get_status() == 401:
            throttle.failed(key, PASSWORD)
        elif self.current_user is not None:
            throttle.succeeded(key, PASSWORD)


class RemoteAgentIdentityProvider(PasswordIdentityProvider):
    @default("login_handler_class")
    def _default_login_handler_class(self) -> type[web.RequestHandler]:
        return ThrottledLoginHandler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # With links logging people in, no login may overwrite the owner's password.
        self.allow_password_change = False
        home = os.environ.get("REMOTE_AGENT_HOME")
        self._home = Path(home) if home else None
        self.links = shares.Cache(Path(home)) if home else None
        # Visitors through the tunnel and local users (ssh -L) are counted apart, so that failures
        # of the one never slow the other down; local users are counted by their user id, which
        # they cannot rotate, so they need no global budget.
        self.throttles = {TUNNEL: LoginThrottle(), LOCAL: LoginThrottle(global_budget=None)}
        self._unlocks = Unlocks(self._home)
        self._edge_secret = EdgeSecret(self._home)
        self._public_host: tuple[tuple[int, int, int] | None, str | None] = (None, None)
        self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")
        self._checks_pending = 0
        self._password_file = jupyter_config.config_dir() / jupyter_config.SERVER_CONFIG
        self._password_seen = self._file_key(self._password_file)
        # Cookies made before this provider marked them were made with the hash Jupyter started with.
        self._startup_mark = _mark(self.hashed_password)
        # Open websockets (kernels, terminals, collaboration rooms: every WebSocketHandler asks
        # get_user), by share link id and by the owner's password mark.
        self._link_sockets: dict[str, weakref.WeakSet[WebSocketHandler]] = {}
        self._password_sockets: dict[str, weakref.WeakSet[WebSocketHandler]] = {}
        self._watch: PeriodicCallback | None = None
        self._ask_for_no_referrer()
        self._keep_protections()
        self._memory_key = os.urandom(32)
        self._owner_sessions: dict[str, str] = {}  # owner session -> the password mark it was opened with
        self.started_by_links = share_cleanup.Registry()
        self._started_at = _now()
        self._ending: set[str] = set()
        if self.links is not None:
            self._start_watch()

    # -- the owner's password, read afresh ---------------------------------------------

    @staticmethod
    def _file_key(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def refresh_password(self) -> None:
        """Take a hash that `password` (or `jupyter server password`) wrote since the last look."""
        key = self._file_key(self._password_file)
        if key == self._password_seen:
            return
        self._password_seen = key
        try:
            hashed = jupyter_config.existing_hash(self._password_file.parent)
        except RemoteAgentError:
            hashed = None  # a half-edited file: keep the password Jupyter has
        if hashed and hashed != self.hashed_password:
            self.hashed_password = hashed
            self.log.info("The Jupyter password changed; sessions opened with the old one must log in again.")
            mark = _mark(hashed)
            self._owner_sessions = {k: v for k, v in self._owner_sessions.items() if v == mark}

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        """The owner's password from the login form (checked off the loop by the handler); never a password change."""
        verdict: bool | None = getattr(handler, "_password_verdict", None)
        if verdict is None:
            self.refresh_password()
            typed = handler.get_argument("password", default="")
            verdict = bool(typed) and bool(self.passwd_check(typed))  # type: ignore[no-untyped-call]
        return self.generate_anonymous_user(handler) if verdict else None

    # -- checking a password off Jupyter's event loop ----------------------------------

    async def check_password_off_loop(self, typed: str) -> bool | None:
        """Whether `typed` is the password, computed on the worker thread; None when too many wait already.

        argon2 takes tens of milliseconds of CPU a check: on the event loop, a guesser would
        freeze every notebook of the owner for as long as the guessing lasts.
        """
        self.refresh_password()
        if not typed:
            return False
        if self._checks_pending >= MAX_PENDING_CHECKS:
            return None
        self._checks_pending += 1
        try:
            loop = asyncio.get_running_loop()
            return bool(await loop.run_in_executor(self._checker, self.passwd_check, typed))
        finally:
            self._checks_pending -= 1

    # -- the brake: which budget a login attempt is counted in -------------------------------

    def brake_for(self, handler: web.RequestHandler) -> tuple[LoginThrottle, str]:
        """The throttle and the key a login attempt is counted under (after any `password --unlock`)."""
        if self._unlocks.requested():
            for throttle in self.throttles.values():
                throttle.clear()
            self.log.info("The login brake was cleared (remote-agent password --unlock).")
        client = self.client_of(handler)
        uid = self._connection_owner(handler)
        # The edge's secret can be read from the agent's local API by any local user: only a
        # connection made by Jupyter's own user (the agent runs as it) may claim a visitor.
        if client.channel == TUNNEL and uid == os.getuid():
            return self.throttles[TUNNEL], client.address
        return self.throttles[LOCAL], login_client.local_key(uid)

    # -- who sends the request, and for which Host -----------------------------------------

    def client_of(self, handler: web.RequestHandler) -> Client:
        """The request's client as this server can prove it (login_client.py); computed once a request."""
        known: Client | None = getattr(handler, "_remote_agent_client", None)
        if known is not None:
            return known
        headers = handler.request.headers
        client = None
        # The edge's secret can be read from the agent's local API by any local user: only a
        # connection made by Jupyter's own user (the agent runs as it) may claim a visitor.
        if self._edge_secret.proves(headers.get_list(EDGE_HEADER)) and self._connection_owner(handler) == os.getuid():
            forwarded = headers.get_list("X-Forwarded-For"), headers.get_list("X-Forwarded-Proto")
            client = login_client.tunnel_client(*forwarded)
        if client is None:
            peer, _ = _socket_peer(handler)
            client = Client(LOCAL, peer, _socket_protocol(handler))
        handler._remote_agent_client = client  # type: ignore[attr-defined]
        return client

    @staticmethod
    def _connection_owner(handler: web.RequestHandler) -> int | None:
        """The uid of the local process at the other end of the request's connection (looked up once a connection)."""
        connection = handler.request.connection
        known: int | bool | None = getattr(connection, "_remote_agent_owner", False)
        if known is not False:
            return None if known is None else int(known)
        peer, peer_port = _socket_peer(handler)
        owner = login_client.socket_owner(peer, peer_port, _server_port(handler))
        with contextlib.suppress(AttributeError):
            setattr(connection, "_remote_agent_owner", owner)  # noqa: B010 (tornado's connection has no such field)
        return owner

    def vet_request(self, handler: web.RequestHandler) -> None:
        """Refuse a foreign Host; make Jupyter's own idea of the client address and scheme the proven one.

        Jupyter runs without trust_xheaders, under which Tornado would believe X-Real-Ip,
        X-Scheme and X-Forwarded-* from any peer; what Jupyter logs and whether it marks
        cookies Secure come from here instead, believed only from the tunnel.
        """
        if getattr(handler, "_remote_agent_vetted", False):
            return
        handler._remote_agent_vetted = True  # type: ignore[attr-defined]
        client = self.client_of(handler)
        if not login_client.host_allowed(handler.request.host, self.public_host()):
            self.log.warning("Refused a request for the unknown host %r (DNS rebinding?).", handler.request.host[:100])
            raise _refuse(handler, 403, "This server answers only to its own names")
        handler.request.remote_ip = client.address
        handler.request.protocol = client.protocol
        # The proof has done its job: nothing after this (extensions, error logs) sees it.
        handler.request.headers.pop(EDGE_HEADER, None)

    def public_host(self) -> str | None:
        """The session's public host name, as the keeper last recorded it (read again when it changes)."""
        if self._home is None:
            return None
        home = Home(self._home)
        key = self._file_key(home.tunnel_state)
        seen, host = self._public_host
        if key != seen:
            # Two fields of tunnel/state.py's record, read as JSON: Jupyter's part never imports the tunnel's.
            state = read_json(home.tunnel_state) or {}
            url = next((u for u in (state.get("public_url"), state.get("last_url")) if isinstance(u, str) and u), None)
            host = login_client.host_name(url.split("://", 1)[-1].split("/", 1)[0]) if url else None
            self._public_host = (key, host)
        return host

    # -- who is asking ----------------------------------------------------------------

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        known: User | None = getattr(handler, "_jupyter_current_user", None)
        if known:
            return known
        self.vet_request(handler)
        self.refresh_password()
        user = self._user_from_session(handler)
        if isinstance(user, LinkUser):
            self.started_by_links.note_request(handler, user.share_id, handler.base_url)  # type: ignore[attr-defined]
        if user is not None and isinstance(handler, WebSocketHandler):
            if isinstance(user, LinkUser):
                self._remember_socket(self._link_sockets, user.share_id, handler)
            else:
                self._remember_socket(self._password_sockets, _mark(self.hashed_password), handler)
        return user

    def link_logged_in(self, handler: web.RequestHandler, share: shares.Share, address: str) -> None:
        """The join button took a use of `share` (share_join): the collaborator's session cookie."""
        throttle, key = self.brake_for(handler)
        throttle.succeeded(key, LINK)  # a link's success leaves the password failures as they are
        self.log.info(
            "Share link %r logged in from %s (use %d of %d).", share.name, address, share.uses, share.max_uses
        )
        self.set_login_cookie(handler, self._link_user(share), ends=datetime.fromisoformat(share.expires_at))

    def _user_from_session(self, handler: web.RequestHandler) -> User | None:
        name = self.get_cookie_name(handler)
        raw = handler.get_secure_cookie(name, **self.get_secure_cookie_kwargs)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            user = User(data["username"], data["name"], data["display_name"], data["initials"], data["avatar_url"])
            user.color = data.get("color")
        except (ValueError, KeyError, TypeError):
            self.clear_login_cookie(handler)
            return None
        share_id = data.get("share")
        if share_id:
            share = next((s for s in (self.links.current() if self.links else []) if s.id == share_id), None)
            if share is None or not share.active(_now()):
                if isinstance(handler, (LoginFormHandler, share_join.JoinHandler)):
                    # The login and join pages forget it: a new link or the password logs in again.
                    self.clear_login_cookie(handler)
                    return None
                # Elsewhere the cookie stays: each page then says why, until a new login replaces it.
                state = "was revoked" if share is None or share.revoked else "has expired"
                raise _refuse(handler, 403, f"The share link of this session {state}; ask for a new one")
            return LinkUser(**{**asdict(user), "share_id": share.id})
        mark = _mark(self.hashed_password)
        if data.get("password", self._startup_mark) != mark or self._owner_sessions.get(data.get("session")) != mark:
            self.log.warning("Refused a session opened with a previous password.")
            self.clear_login_cookie(handler)
            return None
        return user

    @staticmethod
    def _link_user(share: shares.Share) -> LinkUser:
        return LinkUser(
            username=f"share-{share.id[:12]}",
            name=share.name,
            display_name=f"{share.name} (share link)",
            share_id=share.id,
        )

    # -- cookies ------------------------------------------------------------------------

    def get_handlers(self) -> list[tuple[str, object]]:
        return [*super().get_handlers(), (share_join.JOIN_PATH, share_join.JoinHandler)]

    def cookie_secret_hook(self, h: Any) -> Any:
        """Jupyter's cookie secret comes from a file any kernel can read: add a key only this process holds."""
        h = super().cookie_secret_hook(h)
        h.update(self._memory_key)
        return h

    def set_login_cookie(self, handler: web.RequestHandler, user: User, ends: datetime | None = None) -> None:
        """Jupyter's login cookie, `SameSite=Lax`, and no longer-lived than `ends` (a link's expiry)."""
        options = dict(self.cookie_options)
        options.setdefault("samesite", "Lax")
        if ends is not None:
            options["expires"] = min(ends, _now() + timedelta(days=30))
            options["expires_days"] = None
        saved = self.cookie_options
        self.cookie_options = options
        try:
            super().set_login_cookie(handler, user)
        finally:
            self.cookie_options = saved

    def user_to_cookie(self, user: User) -> str:
        data = json.loads(super().user_to_cookie(user))
        if isinstance(user, LinkUser) and user.share_id:
            data["share"] = user.share_id
        else:
            data["password"] = _mark(self.hashed_password)
            data["session"] = self._open_owner_session()
        return json.dumps(data)

    def _open_owner_session(self) -> str:
        """A new owner session, listed in this process only, under the password it was opened with.

        Whoever copied the signing key out of Jupyter's memory (code running as the owner can
        read it) still needs a listed session; a password change ends them all.
        """
        session = secrets.token_urlsafe(18)
        self._owner_sessions[session] = _mark(self.hashed_password)
        while len(self._owner_sessions) > MAX_OWNER_SESSIONS:
            del self._owner_sessions[next(iter(self._owner_sessions))]
        return session

    def identity_model(self, user: User) -> dict[str, Any]:
        model = asdict(user)
        model.pop("share_id", None)
        return model

    # -- closing a link's websockets when it ends ---------------------------------------

    def _remember_socket(
        self, sockets: dict[str, weakref.WeakSet[WebSocketHandler]], key: str, handler: WebSocketHandler
    ) -> None:
        sockets.setdefault(key, weakref.WeakSet()).add(handler)
        self._start_watch()

    def _start_watch(self) -> None:
        if self._watch is None:
            self._watch = PeriodicCallback(self.close_ended_sessions, WATCH_INTERVAL_MS)
            self._watch.start()

    def close_ended_sessions(self) -> None:
        """Close the websockets opened with a link that has ended, or with a password since changed;
        shut down what ended links started."""
        self._end_links()
        if self._link_sockets:
            now = _now()
            current = {s.id: s for s in (self.links.current() if self.links else [])}
            for share_id, sockets in list(self._link_sockets.items()):
                share = current.get(share_id)
                if share is not None and share.active(now):
                    if not sockets:
                        del self._link_sockets[share_id]  # all of them closed by their browsers
                    continue
                del self._link_sockets[share_id]
                closed = sum(self._close(ws, "share link ended") for ws in list(sockets))
                name = share.name if share else share_id[:12]
                self.log.info("Share link %r ended: closed %d kernel/terminal/document connection(s).", name, closed)
        if self._password_sockets:
            self.refresh_password()
            mark = _mark(self.hashed_password)
            for old in [m for m in self._password_sockets if m != mark or not self._password_sockets[m]]:
                sockets = self._password_sockets.pop(old)
                if old != mark:
                    closed = sum(self._close(ws, "password changed") for ws in list(sockets))
                    self.log.info("The password changed: closed %d connection(s) opened with the old one.", closed)

    def _end_links(self) -> None:
        """Each link that ended while this Jupyter ran: its kernels and terminals shut down, once."""
        if self.links is None:
            return
        now = _now()
        for share in self.links.current():
            if share.active(now) or share.ended_cleanup is not None or share.id in self._ending:
                continue
            ended = datetime.fromisoformat(share.revoked_at or share.expires_at)
            if ended < self._started_at:
                continue
            self._ending.add(share.id)
            settings = self.parent.web_app.settings if self.parent is not None else {}
            IOLoop.current().add_callback(self._end_link, settings, share.id)

    async def _end_link(self, settings: dict[str, Any], share_id: str) -> None:
        if self.links is None:
            return
        try:
            await self.started_by_links.end_link(settings, self.links.home, share_id, self.log)
        except Exception as e:  # one failure must not stop the watch
            self.log.warning("Could not end what a share link started: %s", e)

    def _close(self, ws: WebSocketHandler, reason: str) -> bool:
        """Close one websocket; False when it was not open (a handshake that failed leaves no stream)."""
        connection = ws.ws_connection
        if connection is None or getattr(connection, "stream", None) is None or connection.is_closing():
            return False
        try:
            ws.close(POLICY_VIOLATION, reason)
        except Exception as e:  # one broken connection must not keep the others open
            self.log.warning("Could not close a websocket (%s): %s", reason, e)
            return False
        return True

    # -- headers ----------------------------------------------------------------------------

    def _keep_protections(self) -> None:
        """Drop what a user's `ServerApp.tornado_settings` would use to switch the XSRF check or
        the origin checks off; the ServerApp keys themselves are fixed on Jupyter's command line."""
        app = self.parent
        if app is None or not hasattr(app, "tornado_settings"):
            return
        settings = dict(app.tornado_settings)
        dropped = sorted(key for key in PROTECTED_TORNADO_SETTINGS if key in settings)
        for key in dropped:
            del settings[key]
        if dropped:
            app.tornado_settings = settings
            self.log.warning("Ignored ServerApp.tornado_settings %s: remote-agent keeps these protections on.", dropped)

    def _ask_for_no_referrer(self) -> None:
        """Referrer-Policy on every page, added to whatever headers the user's config sets."""
        app = self.parent
        if app is None or not hasattr(app, "tornado_settings"):
            return
        settings = dict(app.tornado_settings)
        headers = dict(settings.get("headers") or {})
        headers.setdefault("Referrer-Policy", "no-referrer")
        settings["headers"] = headers
        app.tornado_settings = settings
