"""Jupyter's login as remote-agent runs it: the owner's password, share links, and a brake on guessing.

Jupyter loads this class through `--ServerApp.identity_provider_class` (see
jupyter_process.server_args) and runs it in its own process, so nothing here may print
or import much. On top of Jupyter's password login it:
- reads the owner's password hash again whenever its file changes, so `password`
  takes effect at once, without a restart; browsers logged in with the old password
  must log in again, and their open kernel and terminal websockets are closed;
- accepts share links (`/login?token=SECRET`) checked against the record file at each
  request (see shares.py); a revoked or expired link, and every browser session opened
  with it, is refused with 403, and that link's open websockets are closed: kernels,
  terminals (a terminal is a shell as the owner) and shared documents (collaboration
  rooms), so nothing typed afterwards reaches the document; Jupyter, its kernels and the
  owner's sessions carry on;
- slows down repeated failed logins per client address (login_throttle.py), for the
  password and for links alike;
- never lets a login change the owner's password, and asks browsers not to send the
  page's address (which may hold a link's secret) to other sites.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import weakref
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

from remote_agent import jupyter_config, shares
from remote_agent.errors import RemoteAgentError
from remote_agent.login_throttle import LoginThrottle

WATCH_INTERVAL_MS = 1000  # how soon an ended link (or an old password) loses its open websockets
POLICY_VIOLATION = 1008  # the websocket close code for "no longer allowed"
LOOPBACK = "127.0.0.1 (ssh or local)"


def client_address(handler: web.RequestHandler) -> str:
    """Who is trying to log in, as far as this server can tell.

    Jupyter listens on loopback only, so every peer is local: the ngrok agent, sshd's
    forward, or a local user. Behind ngrok the client is the last X-Forwarded-For entry,
    the one the edge added (earlier entries, and X-Real-Ip, come from the client and
    could be anything). Without it (ssh mode), all clients count as one loopback address.
    """
    entries = [
        part.strip()
        for value in handler.request.headers.get_list("X-Forwarded-For")
        for part in value.split(",")
        if part.strip()
    ]
    return entries[-1] if entries else LOOPBACK


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


def _too_many(handler: web.RequestHandler, wait: float) -> Exception:
    message = f"Too many failed logins from your address; try again in {math.ceil(wait)} s"
    return _refuse(handler, 429, message, retry_after=wait)


class ThrottledLoginHandler(LoginFormHandler):
    """Jupyter's login form, answering 429 while the client's address must wait."""

    def _render(self, message: dict[str, str] | None = None) -> None:
        # The form posts back to this page. Under `no-referrer` a browser sends that POST with
        # `Origin: null`, which Jupyter refuses; `same-origin` still tells other sites nothing.
        self.set_header("Referrer-Policy", "same-origin")
        super()._render(message)  # type: ignore[no-untyped-call]

    @allow_unauthenticated
    def post(self) -> None:
        provider = self.identity_provider
        throttle: LoginThrottle | None = getattr(provider, "throttle", None)
        if throttle is None:
            super().post()  # type: ignore[no-untyped-call]
            return
        address = client_address(self)
        wait = throttle.wait(address)
        if wait > 0:
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(wait)))
            self._render(message={"error": f"Too many failed logins: try again in {math.ceil(wait)} s."})
            return
        super().post()  # type: ignore[no-untyped-call]
        if self.get_status() == 401:
            throttle.failed(address)
        elif self.current_user is not None:
            throttle.succeeded(address)


class RemoteAgentIdentityProvider(PasswordIdentityProvider):
    @default("login_handler_class")
    def _default_login_handler_class(self) -> type[web.RequestHandler]:
        return ThrottledLoginHandler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # With links logging people in, no login may overwrite the owner's password.
        self.allow_password_change = False
        home = os.environ.get("REMOTE_AGENT_HOME")
        self.links = shares.Cache(Path(home)) if home else None
        self.throttle = LoginThrottle()
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
        """The owner's password from the login form; never a password change."""
        self.refresh_password()
        typed = handler.get_argument("password", default="")
        if typed and self.passwd_check(typed):  # type: ignore[no-untyped-call]
            return self.generate_anonymous_user(handler)
        return None

    # -- who is asking ----------------------------------------------------------------

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        known: User | None = getattr(handler, "_jupyter_current_user", None)
        if known:
            return known
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
        address = client_address(handler)
        wait = self.throttle.wait(address)
        if wait > 0:
            raise _too_many(handler, wait)
        share = shares.find_by_secret(self.links.current(), secret)
        if share is None:
            self.throttle.failed(address)
            return None
        if not share.active(_now()):
            state = "was revoked" if share.revoked else "has expired"
            self.log.warning("Refused the share link %r: it %s.", share.name, state)
            raise _refuse(handler, 403, f"This share link {state}; ask for a new one")
        self.throttle.succeeded(address)
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
                self.log.info("Share link %r ended: closed %d kernel/terminal/document connection(s).", name, closed)
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
