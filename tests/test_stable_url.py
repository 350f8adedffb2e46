"""NGROK_DOMAIN: the URL survives every reopen, so nobody is told of a change and no tip is given.

The fake agent keeps a reserved domain's URL (host and port) across agent restarts, as
ngrok keeps a static domain.
"""

from __future__ import annotations

import os
import signal
import uuid

from conftest import PASSWORD, Sandbox, wait_until
from jupyter_client import JupyterClient
from receiver import Receiver


def test_reserved_domain_keeps_the_url_across_agent_death(sandbox: Sandbox) -> None:
    domain = f"jupyter-{uuid.uuid4().hex[:6]}.ngrok.localhost"
    with Receiver() as receiver:
        serve = sandbox.follow(NGROK_DOMAIN=domain, REMOTE_AGENT_WEBHOOK=receiver.url)
        url = serve.wait_for(r"Public URL\s+(\S+)", timeout=90)[1]
        assert url.startswith(f"http://{domain}:")
        wait_until(lambda: receiver.bodies, 20, "the webhook to hear of the first URL")

        for _ in range(2):
            agent_pid = sandbox.tunnel_state()["agent_pid"]
            os.kill(agent_pid, signal.SIGKILL)
            wait_until(
                lambda p=agent_pid: (
                    sandbox.tunnel_state().get("status") == "up"  # type: ignore[misc]
                    and sandbox.tunnel_state().get("agent_pid") not in (None, p)
                ),
                15,
                "the keeper to reopen the tunnel",
            )
            assert sandbox.run("url").stdout.strip() == url

        state = sandbox.tunnel_state()
        assert state["reopened"] == 2
        assert state["url_changes"] == 0
        assert JupyterClient(url).login(PASSWORD).status_code == 302
        assert serve.proc.poll() is None
        assert not any("New public URL" in line for line in serve.lines)
        serve.wait_for(rf"Tunnel back at the same URL  {url}$", timeout=5)
        assert not any("NGROK_DOMAIN" in line for line in serve.lines), "no tip: the domain is set"
        assert len(receiver.bodies) == 1, "the URL never changed, so the hooks ran once"
