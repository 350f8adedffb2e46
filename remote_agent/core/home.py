"""REMOTE_AGENT_HOME: the path of every file remote-agent keeps there, each beside the one module that writes it.

A file has one writer; anyone may read it. Records are read and written through the record
class its writer owns (core/records.py is their base); core/store.py does the writing.
"""

from __future__ import annotations

from pathlib import Path

from remote_agent.core.store import ensure_private_dir


class Home:
    """The directory of one session's files (0700). Paths only: no file is read or written here."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> Home:
        ensure_private_dir(self.root)
        return self

    def _file(self, name: str) -> Path:
        return self.root / name

    # -- written by the tunnel part
    @property
    def tunnel_state(self) -> Path:
        """tunnel/state.py (the keeper; stop_keeper marks a tunnel whose keeper it ended)."""
        return self._file("tunnel.json")

    @property
    def keeper_config(self) -> Path:
        """tunnel/keeper_config.py (serve, for the keeper to read)."""
        return self._file("keeper.json")

    @property
    def ngrok_config(self) -> Path:
        """tunnel/agent.py: the agent's own config file (holds the authtoken)."""
        return self._file("ngrok.yml")

    @property
    def keeper_log(self) -> Path:
        """The keeper's logging (tunnel/keeper.py); the supervisor appends a line when it restarts it."""
        return self._file("keeper.log")

    @property
    def edge_secret(self) -> Path:
        """core/edge_secret.py (the keeper creates it, Jupyter reads it)."""
        return self._file("edge-secret")

    @property
    def hints(self) -> Path:
        """commands/follow.py: tips already given once (e.g. NGROK_DOMAIN after the URL changed)."""
        return self._file("hints.json")

    # -- written by the Jupyter part
    @property
    def jupyter_record(self) -> Path:
        """jupyter/record.py (serve starts Jupyter; the supervisor reports a restart through it)."""
        return self._file("jupyter.json")

    @property
    def jupyter_log(self) -> Path:
        """Jupyter's own output (its window); markers from jupyter/process.py and the supervisor."""
        return self._file("jupyter.log")

    @property
    def shares(self) -> Path:
        """jupyter/share_links.py: share links (their secrets hashed)."""
        return self._file("shares.json")

    @property
    def login_unlock(self) -> Path:
        """jupyter/throttle.py: `password --unlock` touches it, Jupyter's login guard reads it."""
        return self._file("login-unlock")

    @property
    def kernels(self) -> Path:
        """jupyter/kernelspecs.py: the kernels offered and those the user removed."""
        return self._file("kernels.json")

    @property
    def kernels_lock(self) -> Path:
        """Held by jupyter/kernels.py while it changes the kernels offered."""
        return self._file("kernels.lock")

    @property
    def kernelspecs(self) -> Path:
        """jupyter/kernelspecs.py: the folder on Jupyter's JUPYTER_PATH."""
        return self._file("jupyter")

    @property
    def collaboration(self) -> Path:
        """jupyter/collaboration.py: collaboration's sessions, document history and file ids (0700)."""
        return self._file("collaboration")

    @property
    def kernel_probes(self) -> Path:
        """jupyter/python_envs.py: what each interpreter answered when asked."""
        return self._file("kernel-probes.json")

    @property
    def password_checked(self) -> Path:
        """commands/password.py."""
        return self._file("password-checked.json")

    # -- written by the supervision part
    @property
    def supervision(self) -> Path:
        """supervision/supervisor.py: each window's restarts and how Jupyter was launched."""
        return self._file("supervision.json")

    @property
    def pane_death_hook(self) -> Path:
        """supervision/supervisor.py: the script tmux runs when a supervised program dies."""
        return self._file("on-pane-death")

    # -- written by the config part
    @property
    def session_record(self) -> Path:
        """config/session.py: the settings the session was started with."""
        return self._file("session.json")

    @property
    def session_secrets(self) -> Path:
        """config/session.py: the secret ones among them."""
        return self._file("session-secrets.json")

    @property
    def remembered(self) -> Path:
        """Written by the first release (the notebook directory); config/session.py reads it once and removes it."""
        return self._file("remembered.json")

    # -- written by the commands part
    def warm_answer(self, command: str) -> Path:
        """commands/warm_answer.py: the last answer of `serve --detach` or `status`, and the facts it rested on."""
        return self._file(f"warm-{command}.json")

    # -- held by every command that starts or stops things
    @property
    def lock(self) -> Path:
        """core/store.py's exclusive_lock."""
        return self._file("serve.lock")
