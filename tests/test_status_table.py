"""`status` for people: uptime, kernels busy and idle, the tunnel's age, reopens and why, ngrok's region.

Also `serve --qr` and `url --qr`: the QR code they draw decodes to the public URL.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import websocket
from conftest import PASSWORD, Sandbox
from jupyter_client import JupyterClient, _execute_request
from qr_decode import decode, qr_blocks

from remote_agent.commands.status import reopen_summary
from remote_agent.commands.status_live import duration, region_and_latency
from remote_agent.tunnel.state import TunnelState

URL_LINE = r"Public URL\s+(http://\S+\.localhost:\d+)"


def start_cell(client: JupyterClient, kernel_id: str, code: str) -> None:
    """Send a cell to the kernel and leave it running, as a browser tab that was closed would."""
    base_host = client.base.split("://", 1)[1]
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.session.cookies)
    ws = websocket.create_connection(
        f"ws://{base_host}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
        host=client.host,
        origin=f"http://{client.host}",
        cookie=cookies,
        header=[f"X-XSRFToken: {client.xsrf()}"],
        timeout=10,
    )
    try:
        ws.send(json.dumps(_execute_request(uuid.uuid4().hex, code)))
    finally:
        ws.close()


def test_status_table_and_qr_codes(sandbox: Sandbox) -> None:
    served = sandbox.run("serve", "--detach", "--qr")
    assert served.returncode == 0, served.stderr
    url = re.search(URL_LINE, served.stdout)
    assert url is not None, served.stdout
    assert decode(qr_blocks(served.stdout)) == [url[1]]

    client = JupyterClient(url[1])
    assert client.login(PASSWORD).status_code == 302
    busy_kernel = client.start_kernel()
    idle_kernel = client.start_kernel()
    assert client.execute(idle_kernel, "print('ready')") == "ready\n"
    start_cell(client, busy_kernel, "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass\n")

    new_url = sandbox.kill_agent_and_wait_for_reopen(15)

    shown = sandbox.run("url", "--qr")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == new_url
    assert decode(qr_blocks(shown.stdout)) == [new_url]

    started = time.monotonic()
    status = sandbox.run("status")
    took = time.monotonic() - started
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    jupyter_pid = sandbox.jupyter_record()["pid"]
    assert lines[0] == f"Jupyter   running, pid {jupyter_pid} (Jupyter Notebook), http://127.0.0.1:{sandbox.port}/"
    assert re.fullmatch(r"  uptime    \d+ s, since \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[1]), lines[1]
    assert lines[2] == "  kernels   2: 1 busy, 1 idle"
    assert lines[3] == "  collab    on: outputs kept on the server"
    assert lines[4] == f"Tunnel    ngrok, {new_url}"
    assert re.fullmatch(r"  age       \d+ s, since .* UTC", lines[5]), lines[5]
    assert lines[6] == "  reopened  once: the ngrok agent exited"
    assert lines[7] == "  ngrok     region us, latency 12 ms"
    assert len(lines) == 8, "nothing is wrong, so no more lines"
    assert took < 5, f"status took {took:.1f} s"

    # --json keeps the contract's shape exactly.
    data = json.loads(sandbox.run("status", "--json").stdout)
    assert set(data) == {"jupyter", "tunnel"}
    assert set(data["jupyter"]) == {
        "running",
        "pid",
        "port",
        "local_url",
        "kernels",
        "restarts",
        "last_restart",
        "restart_error",
        "collaboration",
        "notebooks",
    }
    assert set(data["tunnel"]) == {"provider", "running", "public_url", "since", "reopened", "last_error"}
    assert data["jupyter"]["kernels"] == 2
    assert data["tunnel"]["reopened"] == 1


def test_reopen_reasons_durations_and_agent_status_shapes() -> None:
    old_file = {"provider": "ngrok", "status": "up", "public_url": "http://x", "reopened": 3, "version": 1}
    state = TunnelState.from_dict(old_file)
    assert state is not None, "a tunnel.json written before the new fields still reads"
    assert state.reopen_reasons == {}
    assert state.url_changes == 0
    assert reopen_summary(state) == "3 times"
    state.reopen_reasons = {"the ngrok agent exited": 2, "the endpoint disappeared": 1}
    assert reopen_summary(state) == "3 times: the ngrok agent exited (2), the endpoint disappeared (1)"
    assert duration(42) == "42 s"
    assert duration(3 * 3600 + 14 * 60 + 5) == "3 h 14 min"
    assert duration(2 * 86400 + 5 * 3600) == "2 d 5 h"
    assert region_and_latency({"status": "online", "region": "eu", "latency_ms": 23.4}) == "region eu, latency 23 ms"
    assert region_and_latency({"status": "reconnecting", "session": {"region": "ap"}}) == "region ap, reconnecting"
    assert region_and_latency({}) is None
