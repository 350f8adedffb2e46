"""Jupyter's login as remote-agent runs it: the owner's password, share links, and a brake on guessing.

Jupyter loads this class through `--ServerApp.identity_provider_class` (see
jupyter_process.server_args) and runs it in its own process, so nothing here may print
or import much. On top of Jupyter's password login it:
- reads the owner's password hash again whenever its file changes, so `password`
  takes effect at once, without a restart; browsers logged in with the old password
  must log in again, and their open kernel and terminal websockets are closed;
- accepts share links (`/login?token=SECRET`) checked against the record file at each
  request (see shares.py); a revoked or expired link, and every browser session opened
  with it, is refused with 403, and that link's open kernel and terminal websockets are
  closed (a terminal is a shell as the owner), while Jupyter, its kernels and the owner's
  sessions carry on;
- slows down repeated failed logins per client (login_throttle.py), for the password and
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
import hashlib
import html
import json
import math
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import PasswordIdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.ioloop import PeriodicCallback
from tornado.websocket import WebSocketHandler
from traitlets import default

from remote_agent import jupyter_config, login_client, shares
from remote_agent.edge_secret import HEADER as EDGE_HEADER
from remote_agent.edge_secret import EdgeSecret
from remote_agent.errors import RemoteAgentError
from remote_agent.login_client import LOCAL, TUNNEL, Client
from remote_agent.login_throttle import LINK, PASSWORD, LoginThrottle, Unlocks
from remote_agent.state import Home

WATCH_INTERVAL_MS = 1000  # how soon an ended link (or an old password) loses its open websockets
POLICY_VIOLATION = 1008  # the websocket close code for "no longer allowed"
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
        # Open kernel and terminal websockets, by share link id and by the owner's password mark.
        self._link_sockets: dict[str, weakref.WeakSet[WebSocketHandler]] = {}
        self._password_sockets: dict[str, weakref.WeakSet[WebSocketHandler]] = {}
        self._watch: PeriodicCallback | None = None
        self._ask_for_no_referrer()
        self._keep_protections()

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
        peer, peer_port = _socket_peer(handler)
        uid = login_client.socket_owner(peer, peer_port, _server_port(handler))
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
        if self._edge_secret.proves(headers.get_list(EDGE_HEADER)):
            forwarded = headers.get_list("X-Forwarded-For"), headers.get_list("X-Forwarded-Proto")
            client = login_client.tunnel_client(*forwarded)
        if client is None:
            peer, _ = _socket_peer(handler)
            client = Client(LOCAL, peer, _socket_protocol(handler))
        handler._remote_agent_client = client  # type: ignore[attr-defined]
        return client

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
            state = home.read_tunnel()
            url = (state.public_url or state.last_url) if state else None
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
        user: User | None = self._user_from_link(handler)
        if user is not None:
            self.set_login_cookie(handler, user)
            handler._token_authenticated = True  # type: ignore[attr-defined]  # as Jupyter marks its own token logins
        else:
            user = self._user_from_session(handler)
        if user is not None and isinstance(handler, WebSocketHandler):
            if isinstance(user, LinkUser):
                self._remember_socket(self._link_sockets, user.share_id, handler)
            else:
                self._remember_socket(self._password_sockets, _mark(self.hashed_password), handler)
        return user

    def _user_from_link(self, handler: web.RequestHandler) -> LinkUser | None:
        secret = self.get_token(handler)
        if not secret or self.links is None:
            return None
        throttle, key = self.brake_for(handler)
        address = self.client_of(handler).address
        wait = throttle.wait(key)
        if wait > 0:
            raise _too_many(handler, wait, throttle.global_wait() >= wait)
        share = shares.find_by_secret(self.links.current(), secret)
        if share is None:
            throttle.failed(key, LINK)
            return None
        if not share.active(_now()):
            state = "was revoked" if share.revoked else "has expired"
            self.log.warning("Refused the share link %r: it %s.", share.name, state)
            raise _refuse(handler, 403, f"This share link {state}; ask for a new one")
        throttle.succeeded(key, LINK)  # a link's success leaves the password failures as they are
        self.log.info("Share link %r logged in from %s.", share.name, address)
        return self._link_user(share)

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
                # The cookie stays: each page then says why, until a new link replaces it.
                state = "was revoked" if share is None or share.revoked else "has expired"
                raise _refuse(handler, 403, f"The share link of this session {state}; ask for a new one")
            return LinkUser(**{**asdict(user), "share_id": share.id})
        if data.get("password", self._startup_mark) != _mark(self.hashed_password):
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

    def user_to_cookie(self, user: User) -> str:
        data = json.loads(super().user_to_cookie(user))
        if isinstance(user, LinkUser) and user.share_id:
            data["share"] = user.share_id
        else:
            data["password"] = _mark(self.hashed_password)
        return json.dumps(data)

    def identity_model(self, user: User) -> dict[str, Any]:
        model = asdict(user)
        model.pop("share_id", None)
        return model

    # -- closing a link's websockets when it ends ---------------------------------------

    def _remember_socket(
        self, sockets: dict[str, weakref.WeakSet[WebSocketHandler]], key: str, handler: WebSocketHandler
    ) -> None:
        sockets.setdefault(key, weakref.WeakSet()).add(handler)
        if self._watch is None:
            self._watch = PeriodicCallback(self.close_ended_sessions, WATCH_INTERVAL_MS)
            self._watch.start()

    def close_ended_sessions(self) -> None:
        """Close the websockets opened with a link that has ended, or with a password since changed."""
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
                self.log.info("Share link %r ended: closed %d kernel/terminal connection(s).", name, closed)
        if self._password_sockets:
            self.refresh_password()
            mark = _mark(self.hashed_password)
            for old in [m for m in self._password_sockets if m != mark or not self._password_sockets[m]]:
                sockets = self._password_sockets.pop(old)
                if old != mark:
                    closed = sum(self._close(ws, "password changed") for ws in list(sockets))
                    self.log.info("The password changed: closed %d connection(s) opened with the old one.", closed)

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
