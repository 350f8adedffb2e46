"""What a file or folder looks like to a command that read it, so a later look can tell whether it changed.

Read with os alone: commands/quick.py compares them before anything else loads. A signature
changes when a file or folder is written, replaced, removed, chmod-ed or chown-ed; a folder's
subfolders change when a project or environment is added, not when a notebook in it is saved;
an owner and mode change when someone else could now change it (core/file_trust.py).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not loaded on the quick path
if TYPE_CHECKING:
    from collections.abc import Iterable


def signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid]


def owner_and_mode(path: str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return [st.st_uid, st.st_gid, st.st_mode]


def subfolders(path: str) -> list[str] | None:
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir())
    except (OSError, ValueError):
        return None


def signatures(paths: Iterable[str]) -> dict[str, list[int] | None]:
    return {p: signature(p) for p in paths}
