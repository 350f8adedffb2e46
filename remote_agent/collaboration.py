"""The notebook lives on the server: how Jupyter runs with (or without) collaboration and server-side execution.

With jupyter-collaboration and jupyter-server-nbmodel, a notebook's document lives in
Jupyter: cells are run by the server, which writes their outputs into that document (and
the file) whether or not a browser watches, and everyone who opens it edits the same one.
This module owns the settings Jupyter gets for that, and where their state is kept: under
REMOTE_AGENT_HOME, never in the user's notebook directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from remote_agent.state import ensure_private_dir, write_private

# The Jupyter server extensions of this machinery, and our own one that tells `status` what runs.
SERVER_EXTENSIONS = ("jupyter_server_ydoc", "jupyter_server_nbmodel", "jupyter_server_fileid")
STATUS_EXTENSION = "remote_agent.notebook_status"
STATUS_ROUTE = "/remote-agent/notebooks"  # answered by notebook_status inside Jupyter
# Their front ends: off, the pages must not ask for routes the server no longer has.
FRONTEND_EXTENSIONS = (
    "@jupyter/docprovider-extension",
    "@jupyter/collaboration-extension",
    "@datalayer/jupyter-server-nbmodel",
)
# A document's edit history is merged into one entry after this long without edits, so the
# store stays small (a progress bar updates its output many times).
SQUASH_AFTER_SECONDS = 600


def state_dir(home: Path) -> Path:
    """Where the collaboration machinery keeps its state (0700): sessions, document history, file ids."""
    return home / "collaboration"


def status_token_file(home: Path) -> Path:
    """The secret `status` shows to Jupyter to read which notebooks run (0600, written by Jupyter at start)."""
    return state_dir(home) / "status-token"


def parse(raw: str) -> bool:
    """REMOTE_AGENT_COLLABORATION's text: True for on. Unknown text is the caller's to refuse."""
    return raw.strip().lower() in ("on", "true", "yes", "1")


def server_args(home: Path, enabled: bool) -> list[str]:
    """Jupyter's command-line settings for the collaboration machinery, on or off."""
    if not enabled:
        return [f"--ServerApp.jpserver_extensions={name}=False" for name in SERVER_EXTENSIONS]
    where = state_dir(home)
    return [
        f"--ServerApp.jpserver_extensions={STATUS_EXTENSION}=True",
        # Both cell executors of the front end (jupyter-collaboration's and nbmodel's) run cells
        # on the server, whichever of them the page picks.
        "--YDocExtension.server_side_execution=True",
        # Jupyter's defaults write these into the notebook directory (or the current one).
        f"--YDocExtension.session_store_path={where / 'sessions.json'}",
        f"--SQLiteYStore.db_path={where / 'documents.db'}",
        f"--SQLiteYStore.squash_after_inactivity_of={SQUASH_AFTER_SECONDS}",
        f"--BaseFileIdManager.db_path={where / 'file_ids.db'}",
    ]


def prepare(home: Path, enabled: bool) -> dict[str, str]:
    """Make the state directory; the environment Jupyter needs on top of its own for this setting.

    Off, the front ends of the extensions are turned off in a configuration directory of
    remote-agent's own, put first on JUPYTER_CONFIG_PATH: the user's own settings stay untouched.
    """
    ensure_private_dir(state_dir(home))
    if enabled:
        return {}
    config = state_dir(home) / "jupyter-config-off"
    labconfig = ensure_private_dir(ensure_private_dir(config) / "labconfig")
    page_config = {"disabledExtensions": dict.fromkeys(FRONTEND_EXTENSIONS, True)}
    write_private(labconfig / "page_config.json", json.dumps(page_config, indent=1) + "\n")
    earlier = os.environ.get("JUPYTER_CONFIG_PATH")
    return {"JUPYTER_CONFIG_PATH": os.pathsep.join([str(config), *([earlier] if earlier else [])])}


def read_status_token(home: Path) -> str | None:
    try:
        return status_token_file(home).read_text().strip() or None
    except OSError:
        return None
