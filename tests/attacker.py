"""A plain HTTP client for the login tests, as a local attacker would write one.

Standard library only, so that a test can also run it as another user (`python3 -I -c
SOURCE`). It talks to 127.0.0.1:PORT with the Host header and the other headers it is
given, from a chosen loopback source address (127.0.0.0/8 is all loopback, so a test can
be many clients at once).
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlencode


def request(
    port: int,
    method: str,
    path: str,
    host: str,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, dict[str, str]]:
    """(status, headers with lowercase names; repeated ones joined by newlines)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        sent = {"Host": host, **(headers or {})}
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        response.read()
        found: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            found[key] = f"{found[key]}\n{value}" if key in found else value
        return response.status, found
    finally:
        conn.close()


def login(port: int, host: str, password: str, source: str = "127.0.0.1", headers: dict[str, str] | None = None) -> int:
    """GET /login for the _xsrf cookie, then POST the password as the form does; the POST's status."""
    _, got = request(port, "GET", "/login", host, source, headers)
    xsrf = ""
    for cookie in got.get("set-cookie", "").split("\n"):
        name, _, rest = cookie.partition("=")
        if name.strip() == "_xsrf":
            xsrf = rest.split(";", 1)[0]
    sent = {**(headers or {}), "Cookie": f"_xsrf={xsrf}"}
    status, _ = request(port, "POST", "/login", host, source, sent, urlencode({"password": password, "_xsrf": xsrf}))
    return status


def main() -> None:
    """Run the login attempts described by the JSON argument; print their statuses as JSON."""
    plan = json.loads(sys.argv[1])
    statuses = [
        login(plan["port"], plan["host"], plan["password"], plan.get("source", "127.0.0.1"), headers)
        for headers in plan["attempts"]
    ]
    print(json.dumps(statuses))


if __name__ == "__main__":
    main()
