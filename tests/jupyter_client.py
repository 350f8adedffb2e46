"""A small Jupyter client for tests: logs in through a URL and runs code in a kernel over its websocket.

Public URLs of the fake agent are under .localhost, which browsers resolve to loopback
themselves but this machine's resolver does not; the client connects to 127.0.0.1 and
sends the public Host header, exactly what a browser sends.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests
import websocket


class JupyterClient:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.scheme = parts.scheme
        hostname = parts.hostname or "127.0.0.1"
        address = "127.0.0.1" if hostname.endswith(".localhost") else hostname
        self.base = f"{parts.scheme}://{address}:{parts.port or 80}"
        self.session = requests.Session()
        self.session.headers["Host"] = self.host

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, timeout=10, **kwargs)

    def get_ok(self, path: str) -> bool:
        """True when GET `path` answers 200; False when it answers otherwise or not at all."""
        try:
            return self.get(path).status_code == 200
        except requests.RequestException:
            return False

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, allow_redirects=False, timeout=10, **kwargs)

    def xsrf(self) -> str:
        token = self.session.cookies.get("_xsrf")
        if token is None:
            self.get("/login")
            token = self.session.cookies.get("_xsrf")
        assert token, "Jupyter set no _xsrf cookie"
        return str(token)

    def login(self, password: str) -> requests.Response:
        """POST /login as the browser's form does; Jupyter answers 302 on success, 401 otherwise."""
        self.get("/login")
        return self.post("/login", data={"password": password, "_xsrf": self.xsrf()})

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf()}
        return self.session.request(
            method, self.base + path, json=body, headers=headers, timeout=20, allow_redirects=False
        )

    def start_kernel(self, name: str = "python3") -> str:
        response = self.api("POST", "/api/kernels", {"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def execute(self, kernel_id: str, code: str, timeout: float = 30.0) -> str:
        """Run `code` in the kernel over its websocket; return what it printed (stdout and results)."""
        ws_scheme = "wss" if self.scheme == "https" else "ws"
        base_host = self.base.split("://", 1)[1]
        url = f"{ws_scheme}://{base_host}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        headers = [f"X-XSRFToken: {self.xsrf()}"]
        if isinstance(self.session.auth, tuple):
            # Basic auth at ngrok's edge applies to the websocket's handshake too.
            user, password = self.session.auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers.append(f"Authorization: Basic {token}")
        ws = websocket.create_connection(
            url,
            host=self.host,
            origin=f"{self.scheme}://{self.host}",
            cookie=cookies,
            header=headers,
            timeout=timeout,
        )
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(_execute_request(msg_id, code)))
            return _collect_output(ws, msg_id, time.monotonic() + timeout)
        finally:
            ws.close()


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "username": "test",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": "2026-01-01T00:00:00Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def _collect_output(ws: websocket.WebSocket, msg_id: str, deadline: float) -> str:
    output: list[str] = []
    replied = idle = False
    while not (replied and idle):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply from the kernel; output so far: {''.join(output)!r}")
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["header"]["msg_type"]
        content = message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "execute_result":
            output.append(content["data"].get("text/plain", "") + "\n")
        elif kind == "error":
            output.append(f"{content['ename']}: {content['evalue']}\n")
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
    return "".join(output)
