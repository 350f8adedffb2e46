"""One GET to a server on 127.0.0.1 (Jupyter, the ngrok agent's API), for the quick commands.

A plain socket rather than http.client: importing http.client (with email, ssl and the
IDNA codec) costs more than the request. The request is HTTP/1.0, so Tornado answers with
the whole body and closes the connection: no chunked transfer to decode.
"""

from __future__ import annotations

# The C module under `socket`: the quick answers (commands/quick.py) ask Jupyter and the agent
# before anything else loads, and `socket` itself costs more than the request (it turns every
# constant into an enum at import). A bare connection needs none of what it adds.
import _socket

LOOPBACK = b"127.0.0.1"  # bytes: a str host may make the socket load the IDNA codec to encode it


def get(
    port: int, path: str, timeout: float, headers: dict[str, str] | None = None, limit: int = 1 << 20
) -> tuple[int, bytes] | None:
    """(status, body) of GET `path` on 127.0.0.1:`port`, or None when nothing answers in HTTP."""
    lines = [f"GET {path} HTTP/1.0", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    received = bytearray()
    try:
        conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        conn.settimeout(timeout)
        conn.connect((LOOPBACK, port))
        conn.sendall(request)
        while len(received) <= limit:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    except (OSError, OverflowError, TypeError):  # no answer, or a port that is none (a damaged record)
        return None
    finally:
        conn.close()
    head, found, body = bytes(received).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not found or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        return None
    return int(status_line[1]), body[:limit]


def port_of(url: str | None) -> int | None:
    """The port of an http URL on this machine's loopback (as the keeper gives the agent's API), else None."""
    from urllib.parse import urlsplit  # not at the top: a status answered from its record has the port

    try:
        parts = urlsplit(url or "")
        port = parts.port
    except ValueError:
        return None
    return port if port and parts.hostname in ("127.0.0.1", "localhost") else None
