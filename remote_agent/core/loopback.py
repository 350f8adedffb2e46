"""One GET to a server on 127.0.0.1 (Jupyter, the ngrok agent's API), for the quick commands.

A plain socket rather than http.client: importing http.client (with email, ssl and the
IDNA codec) costs more than the request. The request is HTTP/1.0, so Tornado answers with
the whole body and closes the connection: no chunked transfer to decode.
"""

from __future__ import annotations

import socket

LOOPBACK = b"127.0.0.1"  # bytes: a str host makes socket load the IDNA codec to encode it


def get(
    port: int, path: str, timeout: float, headers: dict[str, str] | None = None, limit: int = 1 << 20
) -> tuple[int, bytes] | None:
    """(status, body) of GET `path` on 127.0.0.1:`port`, or None when nothing answers in HTTP."""
    lines = [f"GET {path} HTTP/1.0", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    received = bytearray()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect((LOOPBACK, port))
            conn.sendall(request)
            while len(received) <= limit:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return None
    head, found, body = bytes(received).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not found or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        return None
    return int(status_line[1]), body[:limit]
