"""Who sends a request to Jupyter, as far as this server can prove it, and whether its Host is ours.

Jupyter listens on 127.0.0.1 only, so every peer is a local process: the ngrok agent,
sshd's forward of an `ssh -L`, or anyone logged in to this server. Two kinds of client:
- **tunnel**: the request carries the session's edge secret (edge_secret.py), so ngrok's
  edge added it, and the visitor is the address ngrok appended last to X-Forwarded-For;
  the scheme the visitor used is the last X-Forwarded-Proto. The login brake counts these
  visitors by address, plus a budget for all of them together (throttle.py). Since
  any local user can read the secret from the agent's unauthenticated local API, the brake
  also wants the connection to come from a process of Jupyter's own user (the agent's).
- **local**: anything else. Forwarded headers are not believed; the client is the socket
  peer, counted by the user that owns the connecting socket (in /proc/net/tcp): sshd
  connects as the user who logged in, so another local user's guesses never slow the
  owner's `ssh -L` login, and no visitor from the internet ever counts as local.
X-Real-Ip and X-Scheme (which Tornado would believe before anything else) are ignored.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

TUNNEL = "tunnel"
LOCAL = "local"


@dataclass(frozen=True)
class Client:
    channel: str  # TUNNEL or LOCAL
    address: str  # what Jupyter logs: the visitor's address, or the local peer's
    protocol: str  # "https" only where the edge says the visitor used it


def last_value(values: list[str]) -> str | None:
    """The last entry of a list header (the one the nearest proxy added), over repeated lines too."""
    entries = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return entries[-1] if entries else None


def tunnel_client(forwarded_for: list[str], forwarded_proto: list[str]) -> Client | None:
    address = last_value(forwarded_for)
    if address is None:
        return None
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        return None
    proto = last_value(forwarded_proto)
    return Client(TUNNEL, address, "https" if proto == "https" else "http")


def local_key(uid: int | None) -> str:
    """What the login brake counts a local client as: the user that owns its socket."""
    return f"local user {uid}" if uid is not None else "local (owner unknown)"


def _hex_endpoint(address: str, port: int) -> str | None:
    """An IPv4 socket address as /proc/net/tcp writes it (the address in host byte order)."""
    try:
        packed = socket.inet_aton(address)
    except OSError:
        return None
    return f"{int.from_bytes(packed, sys.byteorder):08X}:{port:04X}"


def socket_owner(peer: str, peer_port: int, server_port: int, table: Path = Path("/proc/net/tcp")) -> int | None:
    """The uid owning the client end of a loopback connection to `server_port`, if it can be seen."""
    local = _hex_endpoint(peer, peer_port)
    if local is None:
        return None
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
        if len(fields) > 7 and fields[1] == local and fields[2].endswith(f":{server_port:04X}"):
            try:
                return int(fields[7])
            except ValueError:
                return None
    return None


def host_name(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lowercased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def is_loopback_name(name: str) -> bool:
    """Names no DNS answer can point elsewhere: loopback addresses, localhost and *.localhost (RFC 6761)."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str, public_host: str | None) -> bool:
    """A request for a loopback name or the session's public host; anything else is DNS rebinding."""
    name = host_name(host_header)
    return is_loopback_name(name) or (public_host is not None and name == public_host.lower())
