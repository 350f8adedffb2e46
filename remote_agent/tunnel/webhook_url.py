"""What a webhook URL may be, and how it is named in logs and messages.

The webhook receives the public URL, the door to Jupyter, so it goes only where it is
private: over https, or over plain http to this machine itself (loopback). A `user:password@`
in the URL is sent as basic auth and never shown; nor is the URL's path, which is often the
secret itself (Slack, Discord).
"""

from __future__ import annotations

import base64
import ipaddress
from urllib.parse import unquote, urlsplit, urlunsplit


def is_loopback_host(host: str) -> bool:
    """localhost, names under .localhost (RFC 6761), 127.0.0.0/8 and ::1."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def where(url: str) -> str:
    """scheme://host[:port]/... : what a log may say about a webhook (no credential, no path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/..."


def credentials(url: str) -> tuple[str, str | None]:
    """The URL without `user:password@`, and the Authorization header value they make (or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return clean, "Basic " + base64.b64encode(pair.encode()).decode()


def password_of(url: str) -> str | None:
    """The password part of a `user:password@` URL, as typed and decoded: both are masked in logs."""
    password = urlsplit(url).password
    return password or None


def in_clear(url: str) -> str | None:
    """Why this webhook would carry the public URL unencrypted over a network; None when it would not."""
    parts = urlsplit(url)
    if parts.scheme != "http" or is_loopback_host(parts.hostname or ""):
        return None
    return (
        f"REMOTE_AGENT_WEBHOOK is a plain http:// URL to {parts.hostname}: each new public URL of your "
        "Jupyter (and any password in the webhook URL) would cross the network unencrypted."
    )


IN_CLEAR_FIX = "Use the receiver's https:// URL, or a receiver on this machine (http://127.0.0.1:PORT/...)."
