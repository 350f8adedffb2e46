"""The ngrok traffic policy put in front of Jupyter: checks made at ngrok's edge, before Jupyter.

Jupyter has no limit on failed logins, and scanners find public Jupyter servers within
minutes. What the edge can add:
- a rate limit on login attempts per client address (NGROK_LOGIN_RATE_LIMIT, off by default: a
  rate-limit rule is a paid traffic-policy action, and an account without credit answers
  ERR_NGROK_4026 either when the endpoint is created (the keeper stops, serve exits 5) or to
  each request the rule applies to, every `POST /login` (edge_watch.py sees it); Jupyter's own
  login slows down password guessing instead);
- HTTP basic auth (NGROK_BASIC_AUTH): scanners never see Jupyter at all;
- OAuth with an allow-list of e-mail addresses (--oauth PROVIDER --allow-email ADDRESS);
- always, when the keeper has one, the session's edge secret as a request header: the proof
  Jupyter's login needs before it believes the visitor address ngrok forwards (edge_secret.py).
  `add-headers` costs nothing on any plan (ngrok's TPU pricing page); `remove-headers` would
  cost credit, so the visitor's own copy of the header is not removed: the edge's comes last.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from remote_agent.core.edge_secret import HEADER as EDGE_HEADER

DEFAULT_LOGIN_RATE = 0  # login attempts per minute per client address; 0: no edge rule (opt-in)


def _login_rate_limit(per_minute: int) -> dict[str, Any]:
    return {
        "expressions": ["req.method == 'POST' && req.url.path == '/login'"],
        "actions": [
            {
                "type": "rate-limit",
                "config": {
                    "name": "remote-agent login attempts",
                    "algorithm": "sliding_window",
                    "capacity": per_minute,
                    "rate": "60s",
                    "bucket_key": ["conn.client_ip"],
                },
            }
        ],
    }


def _edge_proof(secret: str) -> dict[str, Any]:
    # Header names are sent lowercased by ngrok; HTTP names are case-insensitive anyway.
    return {"actions": [{"type": "add-headers", "config": {"headers": {EDGE_HEADER.lower(): secret}}}]}


def build(
    basic_auth: str | None,
    oauth_provider: str | None,
    allow_emails: Sequence[str],
    login_rate: int,
    edge_secret: str | None = None,
) -> dict[str, Any] | None:
    """The policy as a dict (ngrok takes it as JSON), or None when there is nothing to check."""
    rules: list[dict[str, Any]] = []
    if edge_secret:
        rules.append(_edge_proof(edge_secret))
    if login_rate > 0:
        rules.append(_login_rate_limit(login_rate))
    if basic_auth:
        rules.append({"actions": [{"type": "basic-auth", "config": {"credentials": [basic_auth]}}]})
    if oauth_provider:
        rules.append({"actions": [{"type": "oauth", "config": {"provider": oauth_provider}}]})
        if allow_emails:
            allowed = ", ".join(json.dumps(e).replace('"', "'") for e in allow_emails)
            rules.append(
                {
                    "expressions": [f"!(actions.ngrok.oauth.identity.email in [{allowed}])"],
                    "actions": [{"type": "deny"}],
                }
            )
    return {"on_http_request": rules} if rules else None
