"""Nothing gets in but through the password (and the edge's checks), and no secret leaks out."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from conftest import PASSWORD, TOKEN, Sandbox, descendants, free_port
from jupyter_client import JupyterClient

BASIC_USER, BASIC_PASSWORD = "ana", "edge-secret-7x9q"
URL_LINE = r"Public URL\s+(http://\S+)"


def listening_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


def listeners() -> dict[str, str]:
    """inode -> local address of every listening TCP socket on the machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                found[fields[9]] = fields[1]
    return found


def is_loopback(address: str) -> bool:
    host = address.split(":", 1)[0]
    return host in ("0100007F", "00000000000000000000000001000000")


def our_processes(sandbox: Sandbox) -> list[int]:
    server = sandbox.tmux_server_pid()
    assert server
    return [server, *descendants(server), *sandbox.fake.live_agent_pids()]


def test_no_secret_in_argv_environment_logs_scrollback_or_state(sandbox: Sandbox) -> None:
    webhook = f"http://127.0.0.1:{free_port()}/hooks/webhook-secret-path-0123"  # its path is often its secret
    secrets = [PASSWORD, TOKEN, BASIC_PASSWORD, f"{BASIC_USER}:{BASIC_PASSWORD}", webhook]
    serve = sandbox.follow(NGROK_BASIC_AUTH=f"{BASIC_USER}:{BASIC_PASSWORD}", REMOTE_AGENT_WEBHOOK=webhook)
    url = serve.wait_for(URL_LINE, timeout=90)[1]
    secrets.append((sandbox.state_dir / "edge-secret").read_text().strip())  # the tunnel's proof for the login
    client = JupyterClient(url)
    client.session.auth = (BASIC_USER, BASIC_PASSWORD)
    assert client.login(PASSWORD).status_code == 302
    kernel = client.start_kernel()
    kernel_env = client.execute(kernel, "import os\nprint(repr(dict(os.environ)))")
    assert "JPY_PARENT_PID" in kernel_env, "not the kernel's environment"
    for secret in secrets:
        assert secret not in kernel_env, "a secret is in the kernel's environment"

    pids = our_processes(sandbox)
    assert len(pids) >= 5, pids  # tmux, Jupyter, kernel, keeper, agent
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        for secret in secrets:
            assert secret not in argv, f"a secret is on the command line of pid {pid}: {argv[:200]}"
            assert secret not in environ, f"a secret is in the environment of pid {pid}"
    assert all(s not in sandbox.tmux("show-environment", "-g").stdout for s in secrets)

    for window in ("jupyter", "tunnel"):
        screen = sandbox.tmux("capture-pane", "-p", "-S", "-", "-t", f"remote-agent:{window}").stdout
        assert all(s not in screen for s in secrets), f"a secret is in the {window} window's scrollback"
    for path in sandbox.state_dir.rglob("*"):  # kernelspecs included
        if path.is_dir():
            continue
        text = path.read_text(errors="replace")
        if path.name in ("ngrok.yml", "ngrok-run.yml", "keeper.json", "session-secrets.json", "edge-secret"):
            continue  # the agent's, the keeper's and the session's settings: 0600, checked below
        assert all(s not in text for s in secrets), f"a secret is in {path.name}"
    assert all(s not in "\n".join(serve.lines + serve.err_lines) for s in secrets)


def test_files_holding_secrets_are_private(sandbox: Sandbox) -> None:
    assert sandbox.run("serve", "--detach", NGROK_BASIC_AUTH=f"{BASIC_USER}:{BASIC_PASSWORD}").returncode == 0
    assert sandbox.state_dir.stat().st_mode & 0o777 == 0o700
    for path in sandbox.state_dir.rglob("*"):
        private = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == private, f"{path} is not {private:o}"
    assert TOKEN in (sandbox.state_dir / "ngrok.yml").read_text()
    config = sandbox.home / ".jupyter" / "jupyter_server_config.json"
    assert config.stat().st_mode & 0o777 == 0o600


def test_everything_listens_on_loopback_only(sandbox: Sandbox) -> None:
    serve = sandbox.follow()
    url = serve.wait_for(URL_LINE, timeout=90)[1]
    client = JupyterClient(url)
    assert client.login(PASSWORD).status_code == 302
    client.start_kernel()  # kernels listen too
    table = listeners()
    checked = 0
    for pid in our_processes(sandbox):
        for inode in listening_inodes(pid) & table.keys():
            assert is_loopback(table[inode]), f"pid {pid} listens on {table[inode]}"
            checked += 1
    assert checked >= 4, "expected Jupyter, the kernel's ports and the agent's API among the listeners"
    assert "inspect_db_size: -1" in (sandbox.state_dir / "ngrok.yml").read_text()


def test_exposed_env_file_and_short_password_get_warnings(sandbox: Sandbox) -> None:
    env_file = sandbox.notebooks / ".env"
    env_file.write_text("JUPYTER_PASSWORD=short-pw\n")
    env_file.chmod(0o644)
    result = sandbox.run("serve", "--detach", JUPYTER_PASSWORD=None)
    assert result.returncode == 0, result.stderr
    assert f"chmod 600 {env_file}" in result.stderr
    assert "12 or more" in result.stderr


def test_basic_auth_at_the_edge_comes_before_jupyter(sandbox: Sandbox) -> None:
    result = sandbox.run("serve", "--detach", NGROK_BASIC_AUTH=f"{BASIC_USER}:{BASIC_PASSWORD}")
    assert result.returncode == 0, result.stderr
    url = sandbox.run("url").stdout.strip()
    scanner = JupyterClient(url)
    page = scanner.get("/login")
    assert page.status_code == 401
    assert "Basic" in page.headers["WWW-Authenticate"]
    assert "Jupyter" not in page.text
    wrong = JupyterClient(url)
    wrong.session.auth = (BASIC_USER, "guess-guess-guess")
    assert wrong.get("/login").status_code == 401
    colleague = JupyterClient(url)
    colleague.session.auth = (BASIC_USER, BASIC_PASSWORD)
    assert colleague.get("/login").status_code == 200
    assert colleague.login(PASSWORD).status_code == 302


def test_oauth_allow_list_and_login_rate_limit_are_sent_to_the_edge(sandbox: Sandbox) -> None:
    sandbox.fake.set_control(credit=True)  # a rate limit is a paid action: this account has credit
    result = sandbox.run(
        "serve", "--detach", "--oauth", "google", "--allow-email", "ana@example.com", NGROK_LOGIN_RATE_LIMIT="20"
    )
    assert result.returncode == 0, result.stderr
    url = sandbox.run("url").stdout.strip()
    page = JupyterClient(url).get("/")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("https://idp.ngrok.com/oauth2/google/")
    api = next(e["url"] for e in sandbox.fake.events() if e["event"] == "started" and e.get("url"))
    with urllib.request.urlopen(f"{api}/api/endpoints", timeout=5) as response:
        endpoint = json.load(response)["endpoints"][0]
    policy = endpoint["traffic_policy"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    proof, *rules = policy["on_http_request"]
    assert [a["type"] for a in proof["actions"]] == ["add-headers"]  # the edge's proof for Jupyter's login
    kinds = [a["type"] for rule in rules for a in rule["actions"]]
    assert kinds == ["rate-limit", "oauth", "deny"]
    assert "'ana@example.com'" in rules[2]["expressions"][0]
    assert "/login" in rules[0]["expressions"][0]
    assert rules[0]["actions"][0]["config"]["bucket_key"] == ["conn.client_ip"]
