"""The SSH alternative: one complete command the user runs on the laptop."""

from __future__ import annotations

import getpass
import ipaddress
import shlex
from collections.abc import Mapping

LAPTOP_PORT = 12345
KEY_PLACEHOLDER = "~/.ssh/KEY.pem"


def server_address(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(address, port) the SSH client connected to, from $SSH_CONNECTION."""
    parts = environ.get("SSH_CONNECTION", "").split()
    if len(parts) == 4:
        return parts[2], parts[3]
    return None, None


def forward_spec(laptop_port: int, jupyter_port: int) -> str:
    """`-L`'s argument, loopback named at both ends by address.

    `localhost` may resolve to ::1 first (Debian, RHEL): sshd would then connect to [::1]:PORT,
    where Jupyter does not listen and any local user may.
    """
    return f"127.0.0.1:{laptop_port}:127.0.0.1:{jupyter_port}"


def ssh_command(
    jupyter_port: int, environ: Mapping[str, str], host: str | None, key: str | None, laptop_port: int = LAPTOP_PORT
) -> str:
    """e.g. `ssh -i ~/.ssh/KEY.pem -N -L 127.0.0.1:12345:127.0.0.1:8888 ubuntu@203.0.113.7`."""
    address, ssh_port = server_address(environ)
    argv = ["ssh", "-i", key or KEY_PLACEHOLDER, "-N", "-L", forward_spec(laptop_port, jupyter_port)]
    if ssh_port and ssh_port != "22":
        argv += ["-p", ssh_port]
    argv.append(f"{getpass.getuser()}@{host or address or 'HOST'}")
    # Keep ~ unquoted so the laptop's shell expands it.
    return " ".join(part if part.startswith("~/") else shlex.quote(part) for part in argv)


def host_is_private(environ: Mapping[str, str], host: str | None) -> bool:
    """True when the printed address is likely not the one the laptop uses (EC2's NAT)."""
    if host:
        return False
    address, _ = server_address(environ)
    if address is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_private and not ip.is_loopback


def laptop_url(laptop_port: int = LAPTOP_PORT) -> str:
    return f"http://localhost:{laptop_port}/"
