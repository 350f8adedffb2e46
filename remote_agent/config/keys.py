"""The one table of settings: every fact about each setting a user can give, in one row.

Resolution (settings.py), the change and weakening rules (session.py), the secret list
(core/redaction.py, checked against this table by a test), the service unit's environment
(commands/service.py), the serve flags' help (cli.py) and `.env.example` are all read from
here. Regenerate `.env.example` after editing a row: `python -m remote_agent.config.keys > .env.example`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from remote_agent.config import parsers
from remote_agent.core.ssh_hint import LAPTOP_PORT

DEFAULT_PORT = 8888
DEFAULT_SESSION = "remote-agent"

# What applying a change takes: restarting the tunnel keeper (the kernels keep running),
# restarting Jupyter (which ends the kernels), or nothing that runs.
Level = Literal["tunnel", "jupyter", "none"]
Parser = Callable[[str, parsers.Source], Any]


def _positive(value: str | None) -> bool:
    try:
        return int(value or 0) > 0
    except ValueError:
        return False


@dataclass(frozen=True)
class Key:
    """One setting."""

    name: str  # the variable; for a flag-only setting, the name the session records it under
    attr: str  # the field of Settings it fills
    parse: Parser  # text -> value, BadInput when the text is not a value it can have
    default: Any  # the value when nothing gives it
    doc: str = ""  # its comment in .env.example; empty: it sits right under the previous one
    example: str = ""  # the value .env.example shows
    flag: str | None = None  # serve's flag that gives it
    flag_dest: str | None = None  # argparse's name for the flag, when not derived from it
    flag_help: str | None = None
    secret: bool = False  # never shown, never in a child's environment, kept apart in the session record
    level: Level = "none"
    moves_url: bool = False  # a change may move the public URL
    # What unsetting it takes away from a public endpoint (a change that needs --reconfigure).
    weakening: str | None = None
    protects: Callable[[str | None], bool] = bool  # whether a value turns that protection on
    recorded: bool = True  # kept in the session record, compared at the next serve
    location: bool = False  # where the files are: read before everything else, never a change
    variable: bool = True  # False: only a flag gives it
    in_env_file: bool = True  # False: a .env cannot set it (it names the .env)
    kept_while_running: bool = False  # while the session runs, the value it applied is the default

    @property
    def dest(self) -> str | None:
        """The flag's name in the parsed command line (and in resolve's `flags`)."""
        if self.flag is None:
            return None
        return self.flag_dest or self.flag.removeprefix("--").replace("-", "_")

    @property
    def in_service_unit(self) -> bool:
        """Carried into the systemd unit, a file every local user can read: never a secret."""
        return self.variable and not self.secret


TUNNEL_KEY = "tunnel"  # --tunnel has no variable: its key is only ever given on purpose

TABLE: tuple[Key, ...] = (
    Key(
        "NGROK_AUTHTOKEN",
        "ngrok_authtoken",
        parsers.text,
        None,
        doc="ngrok account token, from https://dashboard.ngrok.com/get-started/your-authtoken\n"
        "Without it, serve runs Jupyter all the same and prints the ssh -L command instead of a public URL.",
        secret=True,
        level="tunnel",
        moves_url=True,
    ),
    Key(
        "JUPYTER_PASSWORD",
        "jupyter_password",
        parsers.text,
        None,
        doc="The Jupyter login password (stored only as a salted hash). Empty: serve asks on the terminal\n"
        "the first time, or reuses the password you set with `remote-agent password` / `jupyter server password`.",
        secret=True,
        recorded=False,  # checked against Jupyter's stored hash instead (see commands/password.py)
    ),
    Key(
        "JUPYTER_PORT",
        "port",
        parsers.port,
        DEFAULT_PORT,
        doc="Jupyter's local port; it listens on 127.0.0.1 only. Default 8888.",
        example=str(DEFAULT_PORT),
        flag="--port",
        flag_help="Jupyter's local port (JUPYTER_PORT; default 8888)",
        level="jupyter",
    ),
    Key(
        "JUPYTER_ROOT_DIR",
        "root_dir",
        parsers.directory,
        None,
        doc="The notebook directory. Default: the directory where serve first ran.",
        flag="--root-dir",
        flag_help="notebook directory (JUPYTER_ROOT_DIR; default: where serve first ran)",
        level="jupyter",
        kept_while_running=True,
    ),
    Key(
        "JUPYTER_APP",
        "app",
        parsers.app,
        None,  # notebook, without overriding a running JupyterLab
        doc="notebook (Jupyter Notebook, the default) or lab (JupyterLab). Same password, same tunnel.\n"
        "A running Jupyter is kept: to switch, `remote-agent stop`, then serve again.",
        flag="--app",
        flag_help="Jupyter Notebook or JupyterLab (JUPYTER_APP)",
        level="jupyter",
    ),
    Key(
        "NGROK_DOMAIN",
        "domain",
        parsers.domain,
        None,
        doc="A domain of your own for this server (reserved or added in ngrok's dashboard), e.g. jupyter.example.com.\n"
        "Not needed for a stable URL: your account's dev domain comes back at every reopen. Set it on a\n"
        "second server with the same token, which cannot share the one dev domain (ERR_NGROK_334).",
        flag="--domain",
        flag_help="reserved ngrok domain for a URL that never changes (NGROK_DOMAIN)",
        level="tunnel",
        moves_url=True,
    ),
    Key(
        "NGROK_BASIC_AUTH",
        "basic_auth",
        parsers.basic_auth,
        None,
        doc="user:password checked at ngrok's edge before anyone reaches Jupyter's login page\n"
        "(password: 8 characters or more). Empty: no edge check.",
        secret=True,
        level="tunnel",
        weakening="the edge would stop asking for user:password",
    ),
    Key(
        "REMOTE_AGENT_SESSION",
        "session",
        parsers.session,
        DEFAULT_SESSION,
        doc="The tmux session's name. Default remote-agent.",
        example=DEFAULT_SESSION,
        level="jupyter",
    ),
    Key(
        "REMOTE_AGENT_HOME",
        "home",
        parsers.text,
        None,  # $XDG_STATE_HOME/remote-agent: settings.default_home
        doc="Where remote-agent keeps its state and logs. Default ~/.local/state/remote-agent.",
        recorded=False,
        location=True,
    ),
    Key(
        "REMOTE_AGENT_KERNELS",
        "kernels",
        parsers.kernels,
        "auto",
        doc="auto: Jupyter offers your Python environments (venvs, conda environments, python3 on PATH) as\n"
        "kernels, your active one as the default (`remote-agent kernels` lists them). off: only\n"
        "remote-agent's own Python. Default auto.",
        example="auto",
    ),
    Key(
        "REMOTE_AGENT_COLLABORATION",
        "collaboration",
        parsers.collaboration,
        True,
        doc="on: the notebook lives on the server. Cells run there, their output is written into the\n"
        "notebook file whether or not a browser is open (close the laptop, come back tomorrow), and\n"
        "share-link collaborators edit the same notebook live. off: plain Jupyter, output reaches only\n"
        "an open browser. Applied when Jupyter next starts (`remote-agent stop`, then `serve`). Default on.",
        example="on",
        level="jupyter",
    ),
    Key(
        "PYNGROK_NGROK_PATH",
        "ngrok_path",
        parsers.text,
        None,
        doc="The ngrok agent binary (pyngrok's own variable). Default: pyngrok's, downloaded on first use.",
        level="tunnel",
    ),
    Key(
        "REMOTE_AGENT_SSH_HOST",
        "ssh_host",
        parsers.text,
        None,
        doc="For the printed ssh -L command: the host name your laptop uses for this server (on EC2 its\n"
        "public DNS name; the address SSH reports is the private one) and the key file on your laptop.",
    ),
    Key("REMOTE_AGENT_SSH_KEY", "ssh_key", parsers.text, None, example="~/.ssh/KEY.pem"),
    Key(
        "REMOTE_AGENT_ON_URL_CHANGE",
        "on_url_change",
        parsers.hook_command,
        None,
        doc="Told when the public URL is new (the first one after a start, and each different one after a\n"
        "reopen). A command: a plain command line gets the URL as its last argument; one with shell\n"
        'syntax ($, |, ;, >, ...) runs with /bin/sh -c, the URL in "$1". Either way the URL is also in\n'
        "$REMOTE_AGENT_PUBLIC_URL (the previous one in $REMOTE_AGENT_PREVIOUS_URL). Wrap it in single\n"
        "quotes here. It may run for 30 s; a failure is logged (remote-agent logs), never fatal.\n"
        "ntfy (a phone notification):\n"
        "  REMOTE_AGENT_ON_URL_CHANGE='curl -fsS -d \"Jupyter: $REMOTE_AGENT_PUBLIC_URL\" https://ntfy.sh/my-topic'",
        secret=True,  # a hook may carry a token
        level="tunnel",
    ),
    Key(
        "REMOTE_AGENT_WEBHOOK",
        "webhook",
        parsers.webhook,
        None,
        doc='A URL that gets a POST with the JSON body {"public_url", "previous_url", "at", "host"}.\n'
        'Slack and Discord want their own shapes: use the command above (README: "Tell me when the URL changes").\n'
        "https:// only (plain http:// only to this machine); user:password@ in it is sent as basic auth.",
        secret=True,  # a Slack URL is a token
        level="tunnel",
    ),
    Key(
        "REMOTE_AGENT_LAPTOP_PORT",
        "laptop_port",
        parsers.port,
        LAPTOP_PORT,
        doc="The port on your laptop in the printed ssh -L command (you then open http://localhost:PORT/).\n"
        "Default 12345; change it when that port is taken on your laptop.",
    ),
    Key(
        "NGROK_LOGIN_RATE_LIMIT",
        "login_rate",
        parsers.login_rate,
        0,  # opt-in: the edge's rate limit is a paid action (ERR_NGROK_4026)
        doc="Checks at ngrok's edge, before Jupyter (see README, Security):\n"
        "login attempts allowed per minute per client address at ngrok's edge (default: no edge limit).\n"
        "A rate limit is a paid ngrok action: an account without credit refuses the tunnel (ERR_NGROK_4026).\n"
        "Jupyter's own login slows down repeated wrong passwords either way.",
        level="tunnel",
        weakening="the edge would stop limiting login attempts",
        protects=_positive,
    ),
    Key(
        "NGROK_OAUTH",
        "oauth_provider",
        parsers.text,
        None,
        doc="OAuth provider visitors must sign in with (google, github, microsoft, ...), and who may pass",
        flag="--oauth",
        flag_help="visitors log in with google, github, ... at ngrok's edge",
        level="tunnel",
        weakening="the edge would stop asking for an OAuth login",
    ),
    Key(
        "NGROK_OAUTH_ALLOW_EMAILS",
        "allow_emails",
        parsers.emails,
        (),
        flag="--allow-email",
        flag_dest="allow_emails",
        flag_help="with --oauth: who may pass",
        level="tunnel",
        weakening="any OAuth account would pass",
    ),
    Key(
        TUNNEL_KEY,
        "requested_provider",
        parsers.tunnel,
        None,
        flag="--tunnel",
        flag_help="ngrok (needs NGROK_AUTHTOKEN) or ssh only",
        level="tunnel",
        moves_url=True,
        variable=False,
    ),
    Key(
        "REMOTE_AGENT_ENV_FILE",
        "env_file",
        parsers.text,
        None,
        flag="--env-file",
        flag_help="read this .env instead of the session's (REMOTE_AGENT_ENV_FILE)",
        recorded=False,
        location=True,
        in_env_file=False,
    ),
)

BY_NAME = {key.name: key for key in TABLE}
# Every variable a user may put in .env; .env.example documents each of them.
KEYS = tuple(key.name for key in TABLE if key.variable and key.in_env_file)
SECRET_KEYS = tuple(key.name for key in TABLE if key.secret)
SERVICE_UNIT_KEYS = tuple(key.name for key in TABLE if key.in_service_unit)
UNRECORDED_KEYS = tuple(key.name for key in TABLE if not key.recorded)

ENV_EXAMPLE_HEADER = (
    "# remote-agent settings. Copy to .env (cp .env.example .env; chmod 600 .env) and fill in.\n"
    "# Precedence: command-line flag > environment variable > this file > default.\n"
    "# Values here are read by remote-agent only; they are never exported to Jupyter or its kernels.\n"
)


def flag(name: str) -> Key:
    """The setting a serve flag gives (for cli.py's help texts)."""
    return next(key for key in TABLE if key.flag == name)


def env_example() -> str:
    """`.env.example`'s text: every variable a .env may set, with its comment."""
    parts = [ENV_EXAMPLE_HEADER]
    for key in TABLE:
        if not (key.variable and key.in_env_file):
            continue
        if key.doc:
            parts.append("\n" + "".join(f"# {line}".rstrip() + "\n" for line in key.doc.split("\n")))
        parts.append(f"{key.name}={key.example}\n")
    return "".join(parts)


if __name__ == "__main__":
    print(env_example(), end="")
