"""Who a request comes from and whether its Host is ours; the edge's proof. No Jupyter needed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from remote_agent.core import edge_secret
from remote_agent.core.home import Home
from remote_agent.core.store import read_json
from remote_agent.jupyter import login_client
from remote_agent.tunnel.keeper_config import KeeperConfig, write_keeper_config


def test_the_edge_adds_the_proof_with_a_free_action_and_the_keepers_file_never_holds_it(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    secret = edge_secret.create(home.root)
    assert edge_secret.path(home.root).stat().st_mode & 0o777 == 0o600
    config = KeeperConfig(port=8888, ngrok_path=None, basic_auth="ana:edge-secret-7x9q", edge_secret=secret)
    policy = config.traffic_policy()
    assert policy is not None
    proof = policy["on_http_request"][0]["actions"]
    assert proof == [{"type": "add-headers", "config": {"headers": {"x-remote-agent-edge": secret}}}]
    kinds = [a["type"] for rule in policy["on_http_request"] for a in rule["actions"]]
    assert "remove-headers" not in kinds, "remove-headers costs credit on the free plan"
    write_keeper_config(home, config)
    assert secret not in str(read_json(home.keeper_config)), "the secret leaked into the keeper's config file"
    assert KeeperConfig.load(home.keeper_config) == KeeperConfig(
        port=8888, ngrok_path=None, basic_auth="ana:edge-secret-7x9q"
    )


def test_only_the_last_value_of_the_proof_header_counts(tmp_path: Path) -> None:
    reader = edge_secret.EdgeSecret(tmp_path)
    assert not reader.proves(["anything"]), "no keeper, yet something was believed"
    secret = edge_secret.create(tmp_path)
    assert reader.proves([secret])
    assert reader.proves(["a visitor's own copy", secret]), "ngrok appends: the edge's value is the last"
    assert not reader.proves([secret, "a visitor's own copy"])
    assert not reader.proves([])
    newer = edge_secret.create(tmp_path)  # a new keeper
    assert not reader.proves([secret]), "the previous keeper's secret still proves something"
    assert reader.proves([newer])
    edge_secret.remove(tmp_path, secret)  # an old keeper ending after the new one started
    assert reader.proves([newer])
    edge_secret.remove(tmp_path, newer)
    assert not reader.proves([newer])


def test_the_visitor_is_the_last_forwarded_address() -> None:
    client = login_client.tunnel_client(["198.51.100.1, 203.0.113.7"], ["https"])
    assert client == login_client.Client(login_client.TUNNEL, "203.0.113.7", "https")
    client = login_client.tunnel_client(["198.51.100.1", "2001:db8::1"], ["https, http"])
    assert client == login_client.Client(login_client.TUNNEL, "2001:db8::1", "http")
    assert login_client.tunnel_client([], ["https"]) is None
    assert login_client.tunnel_client(["not an address"], []) is None


def test_a_local_client_is_counted_by_the_user_that_owns_its_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            peer, peer_port = client.getsockname()
            assert login_client.socket_owner(peer, peer_port, port) == os.getuid()
            assert login_client.local_key(os.getuid()) == f"local user {os.getuid()}"
            assert login_client.socket_owner(peer, peer_port, port + 1 if port < 65535 else 1) is None


def test_only_loopback_names_and_the_public_host_are_ours() -> None:
    public = "amber-brisk-cedar.ngrok-free.dev"
    for host in ("localhost:12345", "127.0.0.1:8888", "[::1]:8888", "LOCALHOST", "x.ngrok.localhost:4000"):
        assert login_client.host_allowed(host, public), host
    assert login_client.host_allowed(f"{public}", public)
    assert login_client.host_allowed(f"{public.upper()}:443", public)
    for host in ("rebind.attacker.example:12345", "10.0.0.5:8888", f"{public}.attacker.example", ""):
        assert not login_client.host_allowed(host, public), host
    assert not login_client.host_allowed(public, None)
