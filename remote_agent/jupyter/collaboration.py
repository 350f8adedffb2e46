"""The notebook lives on the server: how Jupyter runs with (or without) collaboration and server-side execution.

With jupyter-collaboration and jupyter-server-nbmodel, a notebook's document lives in
Jupyter: cells are run by the server, which writes their outputs into that document (and
the file) whether or not a browser watches, and everyone who opens it edits the same one.
This module owns the settings Jupyter gets for that, and where their state is kept: under
REMOTE_AGENT_HOME, never in the user's notebook directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from remote_agent.core.home import Home
from remote_agent.core.store import ensure_private_dir, write_private

# The Jupyter server extensions of this machinery, and our own one that tells `status` what runs.
SERVER_EXTENSIONS = ("jupyter_server_ydoc", "jupyter_server_nbmodel", "jupyter_server_fileid")
STATUS_EXTENSION = "remote_agent.jupyter.notebook_status"
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
# The files Jupyter keeps there: collaboration sessions (so an open tab reconnects after a
# restart without a reload), the documents' edit history, and file ids.
STATE_FILES = ("sessions.json", "documents.db", "file_ids.db")


def state_dir(home: Path) -> Path:
    """Where the collaboration machinery keeps its state (0700): sessions, document history, file ids."""
    return Home(home).collaboration


def status_token_file(home: Path) -> Path:
    """The secret `status` shows to Jupyter to read which notebooks run (0600, written by Jupyter at start)."""
    return state_dir(home) / "status-token"


def server_args(home: Path, enabled: bool) -> list[str]:
    """Jupyter's command-line settings for the collaboration machinery, on or off."""
    if not enabled:
        return [f"--ServerApp.jpserver_extensions={name}=False" for name in SERVER_EXTENSIONS]
    where = state_dir(home)
    sessions, documents, file_ids = (where / name for name in STATE_FILES)
    return [
        f"--ServerApp.jpserver_extensions={STATUS_EXTENSION}=True",
        # Both cell executors of the front end (jupyter-collaboration's and nbmodel's) run cells
        # on the server, whichever of them the page picks.
        "--YDocExtension.server_side_execution=True",
        # Jupyter's defaults write these into the notebook directory (or the current one).
        f"--YDocExtension.session_store_path={sessions}",
        f"--SQLiteYStore.db_path={documents}",
        f"--SQLiteYStore.squash_after_inactivity_of={SQUASH_AFTER_SECONDS}",
        f"--BaseFileIdManager.db_path={file_ids}",
    ]


def prepare(home: Path, enabled: bool) -> dict[str, str]:
    """Make the state directory; the environment Jupyter needs on top of its own for this setting.

    Off, the front ends of the extensions are turned off in a configuration directory of
    remote-agent's own, put first on JUPYTER_CONFIG_PATH: the user's own settings stay untouched.
    """
    where = ensure_private_dir(state_dir(home))
    for name in STATE_FILES:
        make_private_file(where / name)
    if enabled:
        return {}
    config = state_dir(home) / "jupyter-config-off"
    labconfig = ensure_private_dir(ensure_private_dir(config) / "labconfig")
    page_config = {"disabledExtensions": dict.fromkeys(FRONTEND_EXTENSIONS, True)}
    write_private(labconfig / "page_config.json", json.dumps(page_config, indent=1) + "\n")
    earlier = os.environ.get("JUPYTER_CONFIG_PATH")
    return {"JUPYTER_CONFIG_PATH": os.pathsep.join([str(config), *([earlier] if earlier else [])])}


def make_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists, and tighten it if wider.

    Jupyter's libraries create these files with the process's umask; SQLite and the session
    store keep the mode of a file that is already there (an empty file is an empty database).
    """
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
