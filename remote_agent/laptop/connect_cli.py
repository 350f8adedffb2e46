"""The `connect` subcommand: its flags, and running it; on the laptop side, so a laptop install needs nothing else."""

from __future__ import annotations

import argparse
from typing import Any

from remote_agent.core.console import Console


def add_connect_parser(sub: Any) -> None:
    connect = sub.add_parser(
        "connect",
        help="on your laptop: serve on HOST over SSH and hold a self-healing ssh -L forward to it",
        description="Run on your laptop: make sure serve runs on HOST, then hold "
        "`ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:PORT` open, reopening it on the same local port when it drops. "
        "Ctrl-C ends the forward; Jupyter keeps running.",
    )
    connect.add_argument("destination", metavar="[USER@]HOST", help="the server, as you give it to ssh")
    connect.add_argument("-i", dest="key", metavar="KEY", help="identity file, passed to ssh")
    connect.add_argument("-p", dest="ssh_port", type=int, metavar="PORT", help="the server's SSH port, passed to ssh")
    connect.add_argument("-F", dest="ssh_config", metavar="SSH_CONFIG", help="ssh configuration file, passed to ssh")
    connect.add_argument(
        "-o", dest="ssh_options", action="append", default=[], metavar="SSH_OPTION", help="an ssh -o option (repeat)"
    )
    connect.add_argument("--local-port", type=int, default=12345, help="port on this laptop (default 12345)")
    connect.add_argument("--remote-dir", metavar="DIR", help="directory on the server to run serve in")
    connect.add_argument(
        "--remote-command", metavar="CMD", help="how to run remote-agent on the server, if not in a usual place"
    )
    connect.add_argument("--tunnel", choices=["ssh", "ngrok"], help="ask serve there for this tunnel")
    connect.add_argument("--no-browser", action="store_true", help="do not open the browser")
    connect.add_argument("--json", action="store_true", help="one JSON object per event")


def run_connect(args: argparse.Namespace, console: Console) -> int:
    from remote_agent.laptop.connect import ConnectOptions, connect
    from remote_agent.laptop.ssh_client import SshTarget

    target = SshTarget(
        destination=args.destination,
        key=args.key,
        port=args.ssh_port,
        config=args.ssh_config,
        options=tuple(args.ssh_options),
    )
    options = ConnectOptions(
        target=target,
        local_port=args.local_port,
        remote_dir=args.remote_dir,
        remote_command=args.remote_command,
        tunnel=args.tunnel,
        browser=not args.no_browser,
    )
    return connect(options, console)
