"""The command line: parse, resolve settings, run one command, turn errors into exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from remote_agent import __version__
from remote_agent.commands import warm_answer
from remote_agent.config import keys
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, ExitCode, MissingPrerequisite, NotRunning, RemoteAgentError

if TYPE_CHECKING:
    from remote_agent.config.settings import Settings
    from remote_agent.core.results import Result

# What the server side imports and a laptop install (`connect` only) lacks: the [server] extra.
SERVER_PACKAGES = frozenset(
    {"dotenv", "pyngrok", "libtmux", "jupyter_server", "jupyter_core", "notebook", "argon2", "segno"}
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as BadInput (exit 2, plain words, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{message}.", f"See `{self.prog} --help`.")


def _help(flag: str) -> str | None:
    """A settings flag's help, from the table of settings."""
    return keys.flag(flag).flag_help


def _add_serve_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    serve = sub.add_parser("serve", help="start (or reuse) Jupyter and the tunnel, print the URL, follow it")
    serve.add_argument("--port", type=str, help=_help("--port"))
    serve.add_argument("--root-dir", help=_help("--root-dir"))
    serve.add_argument("--tunnel", choices=["ngrok", "ssh"], help=_help("--tunnel"))
    serve.add_argument("--domain", help=_help("--domain"))
    serve.add_argument("--oauth", metavar="PROVIDER", help=_help("--oauth"))
    allow = keys.flag("--allow-email")
    serve.add_argument("--allow-email", action="append", dest=allow.dest, metavar="ADDRESS", help=allow.flag_help)
    serve.add_argument("--app", choices=["notebook", "lab"], help=_help("--app"))
    serve.add_argument("--qr", action="store_true", help="also draw the public URL as a QR code, for a phone")
    serve.add_argument("--detach", action="store_true", help="print the URL and return instead of following")
    serve.add_argument("--json", action="store_true", help="one JSON object per event")
    serve.add_argument("--env-file", metavar="PATH", help=_help("--env-file"))
    serve.add_argument(
        "--reconfigure", action="store_true", help="apply a change that weakens or closes the public endpoint"
    )


def _add_kernels_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    kernels = sub.add_parser("kernels", help="the Python environments Jupyter offers as kernels")
    kernels.add_argument("--json", action="store_true", help="one JSON object")
    kernels_sub = kernels.add_subparsers(dest="kernels_action", metavar="ACTION", parser_class=_Parser)
    kernels_add = kernels_sub.add_parser("add", help="offer a Python interpreter (or environment folder) as a kernel")
    kernels_add.add_argument("python", metavar="PYTHON", help="e.g. /opt/pytorch/bin/python or ~/envs/ml")
    kernels_add.add_argument("--name", help="the kernel's name (default: derived from the environment's path)")
    kernels_add.add_argument(
        "--install-ipykernel", action="store_true", help="install ipykernel there first (pip, or conda)"
    )
    kernels_remove = kernels_sub.add_parser("remove", help="stop offering a kernel; a found environment stays hidden")
    kernels_remove.add_argument("name", metavar="NAME")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="remote-agent",
        description="Jupyter on this server, kept alive in tmux, reachable through a self-healing ngrok tunnel or SSH.",
    )
    parser.add_argument("--version", action="version", version=f"remote-agent {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_serve_parser(sub)
    status = sub.add_parser("status", help="what runs: Jupyter, kernels, tunnel")
    status.add_argument("--json", action="store_true", help="one JSON object")
    url = sub.add_parser("url", help="the current public URL alone, for scripts")
    url.add_argument("--qr", action="store_true", help="and draw it as a QR code, for a phone")
    stop = sub.add_parser("stop", help="stop the tunnel keeper and Jupyter cleanly")
    stop.add_argument("--tunnel-only", action="store_true", help="leave Jupyter and its kernels running")
    logs = sub.add_parser("logs", help="Jupyter's and the tunnel keeper's logs")
    logs.add_argument("-n", type=int, default=40, metavar="N", help="lines of each log (default 40)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    share = sub.add_parser("share", help="a link that logs a collaborator in without your password")
    share.add_argument("--name", help="what to call the link (default link-N)")
    share.add_argument("--expires", metavar="DURATION", help="90s, 30m, 8h, 7d (default 24h)")
    share.add_argument("--uses", type=int, metavar="N", help="how many browsers the link may log in (default 1)")
    share.add_argument("--list", action="store_true", dest="list_shares", help="the links made, and their state")
    share.add_argument(
        "--revoke", metavar="NAME", help="end a link, every session opened with it, and the kernels they started"
    )
    share.add_argument("--json", action="store_true", help="JSON on stdout")
    sub.add_parser("attach", help="attach this terminal to the tmux session (detach: Ctrl-b d)")
    password = sub.add_parser("password", help="set or change the Jupyter password")
    password.add_argument("--stdin", action="store_true", help="read the password from standard input")
    password.add_argument(
        "--unlock", action="store_true", help="clear the brake on failed logins (the password stays as it is)"
    )
    doctor = sub.add_parser("doctor", help="check prerequisites and configuration")
    doctor.add_argument(
        "--update-agent", action="store_true", help="update remote-agent's own ngrok agent binary to a current version"
    )
    _add_kernels_parser(sub)
    install = sub.add_parser("install-service", help="start Jupyter and the tunnel at boot (a systemd unit)")
    install.add_argument("--user", action="store_true", help="a user unit even when root (the default for others)")
    uninstall = sub.add_parser("uninstall-service", help="remove the systemd unit of install-service")
    uninstall.add_argument("--user", action="store_true", help="the user unit, when root installed one with --user")
    from remote_agent.laptop.connect_cli import add_connect_parser

    add_connect_parser(sub)
    return parser


def show(result: Result, console: Console) -> int:
    """The one place a command's result is written: its lines, or its JSON object with --json."""
    if console.json_mode:
        console.json(result.document())
    else:
        for line in result.lines():
            console.line(line)
    return result.exit_code


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:  # noqa: PLR0912 (one branch per command)
    command = args.command
    if command == "serve":
        from remote_agent.commands.serve import serve

        return serve(settings, console, args.invocation, detach=args.detach, qr=args.qr, reconfigure=args.reconfigure)
    if command == "status":
        from remote_agent.commands.status import status

        return show(status(settings, args.invocation), console)
    if command == "url":
        from remote_agent.commands.status import url

        return url(settings, console, qr=args.qr)
    if command == "stop":
        from remote_agent.commands.stop import stop

        return show(stop(settings, console, tunnel_only=args.tunnel_only), console)
    if command == "logs":
        from remote_agent.commands.logs import logs

        return logs(settings, console, lines=args.n, follow=args.follow)
    if command == "share":
        from remote_agent.commands.share import check_flags, list_shares, share

        check_flags(args.name, args.expires, args.list_shares, args.revoke, args.uses)
        if args.list_shares:
            return show(list_shares(settings), console)
        return share(settings, console, args.name, args.expires, args.revoke, args.uses)
    if command == "attach":
        return attach(settings)
    if command == "password":
        from remote_agent.commands.password import set_password, unlock_logins

        if args.unlock:
            return unlock_logins(settings, console)
        return set_password(settings, console, from_stdin=args.stdin)
    if command == "doctor":
        from remote_agent.commands.doctor import doctor

        return doctor(settings, console, update_agent=args.update_agent)
    if command == "kernels":
        from remote_agent.commands import kernels

        if args.kernels_action == "add":
            return kernels.add(settings, console, args.python, args.name, args.install_ipykernel)
        if args.kernels_action == "remove":
            return kernels.remove(settings, console, args.name)
        return show(kernels.show(settings), console)
    if command in ("install-service", "uninstall-service"):
        from remote_agent.commands.service import install_service, uninstall_service

        action = install_service if command == "install-service" else uninstall_service
        return action(settings, console, user=args.user)
    raise BadInput(f"Unknown command {command!r}.", "See `remote-agent --help`.")


def attach(settings: Settings) -> int:
    from remote_agent.supervision.tmux import TmuxSession

    tmux = TmuxSession(settings.session)
    if not tmux.exists():
        raise NotRunning(f"There is no tmux session {settings.session!r}.", "Start it with `remote-agent serve`.")
    if not sys.stdin.isatty():
        raise BadInput("attach needs a terminal.", "Run it in an interactive SSH session.")
    argv = tmux.attach_argv()
    os.execvp(argv[0], argv)
    return 0  # not reached: exec replaced this process


def _laptop_only(missing: str) -> MissingPrerequisite:
    return MissingPrerequisite(
        f"This install of remote-agent has only the laptop side (`connect`): {missing} is missing.",
        "On the server, run scripts/setup.sh in a clone "
        "(or: pip install 'remote-agent[server]' with Python 3.10 or newer).",
    )


@contextlib.contextmanager
def _server_side() -> Iterator[None]:
    """A laptop install (without the [server] extra) asked for a server command: say what to install.

    The packages are looked for before anything runs (the quick commands load none of them), and
    a package that goes missing later is reported the same way.
    """
    from importlib.util import find_spec

    missing = sorted(name for name in SERVER_PACKAGES if find_spec(name) is None)
    if missing:
        raise _laptop_only(missing[0])
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in SERVER_PACKAGES:
            raise
        raise _laptop_only(str(e.name)) from e


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    console = Console()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return BadInput.exit_code
        console = Console(json_mode=bool(getattr(args, "json", False)))
        if args.command == "connect":
            # The laptop side: the server keeps its own settings, so no .env here is read.
            from remote_agent.laptop.connect_cli import run_connect

            return run_connect(args, console)
        with _server_side():
            from remote_agent.config.settings import env_files_read, remove_secrets_from_environ, resolve
        flags = {key.dest: getattr(args, key.dest, None) for key in keys.TABLE if key.dest}
        read_at_ns = time.time_ns()
        settings = resolve(flags, os.environ)
        # As the command was typed, before its secrets leave the environment: what a warm serve is recorded under.
        cwd = os.getcwd()
        env_files = [str(p) for p in env_files_read(settings, Path(cwd))]
        root_dir = str(settings.root_dir) if settings.root_dir else None
        words = list(argv if argv is not None else sys.argv[1:])
        args.invocation = warm_answer.at_start(words, cwd, dict(os.environ), env_files, root_dir, read_at_ns)
        remove_secrets_from_environ()
        with _server_side():
            return run(args, settings, console)

    except RemoteAgentError as e:
        console.end_progress()
        if debug:
            import traceback

            traceback.print_exc()
        for line in e.lines():
            print(line, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        console.end_progress()
        print(
            "\nInterrupted. Whatever was already started keeps running; `remote-agent status` shows it.",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    except Exception as e:
        if debug:
            import traceback

            traceback.print_exc()
        else:
            print(f"remote-agent: unexpected error: {type(e).__name__}: {e}", file=sys.stderr)
            print("Run again with --debug for the traceback, and please report it.", file=sys.stderr)
        return 1
