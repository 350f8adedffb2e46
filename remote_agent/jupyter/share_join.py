"""Inside Jupyter: the page a share link opens, and the button on it that logs the collaborator in.

Opening a link (`GET /login?token=SECRET`) only shows who they are about to join as; a
chat or mail previewer that fetches the link logs no one in and uses nothing up. The
button posts the secret to `/login/join`, which takes one of the link's uses (under the
record's lock, see shares.redeem) and sets a session cookie that ends with the link.

The page's address holds the secret, so it asks for `no-referrer`: not even its own
form tells the next page where it came from. Chromium then posts the form with
`Origin: null`, which Jupyter's origin check would refuse; the join handler accepts that
one origin because Jupyter's XSRF cookie, posted back with the form, already proves the
post came from this page.
"""

from __future__ import annotations

import getpass
import html
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from remote_agent.core.errors import RemoteAgentError
from remote_agent.jupyter import share_links as shares
from remote_agent.jupyter.throttle import LINK

if TYPE_CHECKING:
    from remote_agent.jupyter.login import RemoteAgentIdentityProvider

JOIN_PATH = "/login/join"

JOIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Join {owner}'s Jupyter</title></head>
<body style="font-family: sans-serif; margin: 3em; max-width: 40em">
<h1>Join {owner}'s Jupyter as {name}</h1>
<p>This link logs one browser in{uses_left}; it expires {expires}.</p>
<form method="post" action="{action}">{xsrf}<input type="hidden" name="token" value="{token}">
<button type="submit" id="join" style="font-size: 1.2em; padding: .4em 1.2em">Join as {name}</button>
</form></body></html>
"""


def _login() -> Any:
    """jupyter_login, which imports this module: its client address, throttle answers and refusal page."""
    from remote_agent.jupyter import login as jupyter_login

    return jupyter_login


def _private_page(handler: web.RequestHandler) -> None:
    """Headers for a page whose address or form holds a link's secret."""
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("Cache-Control", "no-store")


def _refuse(handler: web.RequestHandler, status: int, reason: str) -> Exception:
    _private_page(handler)
    refusal: Exception = _login()._refuse(handler, status, reason)
    return refusal


def _too_many(handler: web.RequestHandler, wait: float, everyone: bool) -> Exception:
    _private_page(handler)
    refusal: Exception = _login()._too_many(handler, wait, everyone)
    return refusal


def link_refused(share_name: str | None, why: str) -> str:
    if share_name is None:
        return "This share link is not known here (mistyped, or long gone); ask for a new one"
    return f"The share link {share_name!r} {why}; ask for a new one"


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("on %Y-%m-%d at %H:%M UTC")


def show_join_page(handler: JupyterHandler, provider: RemoteAgentIdentityProvider, secret: str) -> None:
    """GET /login?token=SECRET: who they join as, and a button; nothing logged in, nothing used up."""
    throttle, key = provider.brake_for(handler)
    wait = throttle.wait(key)
    if wait > 0:
        raise _too_many(handler, wait, throttle.global_wait() >= wait)
    share = shares.find_by_secret(provider.links.current(), secret) if provider.links else None
    if share is None:
        throttle.failed(key, LINK)
        raise _refuse(handler, 403, link_refused(None, ""))
    if getattr(handler.current_user, "share_id", None) == share.id:
        handler.redirect(handler.base_url)  # this browser joined with it already: no second use
        return
    why = share.refusal(datetime.now(timezone.utc))
    if why is not None:
        raise _refuse(handler, 403, link_refused(share.name, why))
    left = share.max_uses - share.uses
    _private_page(handler)
    handler.set_header("Content-Type", "text/html; charset=UTF-8")
    handler.finish(
        JOIN_PAGE.format(
            owner=html.escape(getpass.getuser()),
            name=html.escape(share.name),
            uses_left="" if left == 1 else f" ({left} more browsers may)",
            expires=_when(share.expires_at),
            action=html.escape(handler.base_url.rstrip("/") + JOIN_PATH),
            xsrf=handler.xsrf_form_html(),
            token=html.escape(secret),
        )
    )


class JoinHandler(JupyterHandler):
    """POST /login/join: the join page's button; one use of the link, a session cookie that ends with it."""

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        # Under no-referrer Chromium sends `Origin: null` for the page's own form; the XSRF
        # cookie check that follows is what proves the post came from the join page.
        if self.request.headers.get("Origin") == "null":
            return True
        return bool(super().check_origin(origin_to_satisfy_tornado))

    @allow_unauthenticated
    def get(self) -> None:
        self.redirect(self.base_url)

    @allow_unauthenticated
    def post(self) -> None:
        provider: Any = self.identity_provider
        secret = self.get_body_argument("token", default="")
        if not secret or getattr(provider, "links", None) is None:
            raise _refuse(self, 403, link_refused(None, ""))
        throttle, key = provider.brake_for(self)
        address = provider.client_of(self).address
        wait = throttle.wait(key)
        if wait > 0:
            raise _too_many(self, wait, throttle.global_wait() >= wait)
        try:
            outcome = shares.redeem(provider.links.home, secret, datetime.now(timezone.utc), address)
        except RemoteAgentError as e:
            self.log.warning("Could not take a use of a share link: %s", e)
            raise _refuse(self, 503, "The share links' record is busy; try again in a moment") from e
        if outcome.share is None:
            throttle.failed(key, LINK)
            raise _refuse(self, 403, link_refused(None, ""))
        if outcome.refusal is not None:
            self.log.warning("Refused the share link %r: it %s.", outcome.share.name, outcome.refusal)
            raise _refuse(self, 403, link_refused(outcome.share.name, outcome.refusal))
        provider.link_logged_in(self, outcome.share, address)
        self.redirect(self.base_url)
