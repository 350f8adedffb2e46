"""Whether a file is safe to run (or to read settings from) as this user: no one else can change it.

A program is as trustworthy as the least trusted of the file itself (and, for a link, what it
points to) and every directory above them: whoever owns one of them, or may write to it, can
put their own code in its place. The user and root are trusted; a directory everyone may
write to is fine when its sticky bit keeps others from replacing what is not theirs (/tmp).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_is_private(gid: int, uid: int) -> bool:
    """The user's own group, with no one else in it (Debian's user private groups)."""
    try:
        entry = pwd.getpwuid(uid)
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    return entry.pw_gid == gid and all(member == entry.pw_name for member in group.gr_mem)


def _problem(path: Path, st: os.stat_result, uid: int) -> str | None:
    if st.st_uid not in (uid, 0):
        return f"{path} is owned by {_owner_name(st.st_uid)}"
    if stat.S_ISLNK(st.st_mode):
        return None  # a link's own mode means nothing; its directory and its target are checked
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & stat.S_IWOTH and not sticky_dir:
        return f"{path} can be changed by every user"
    if st.st_mode & stat.S_IWGRP and not sticky_dir and not _group_is_private(st.st_gid, uid):
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = f"gid {st.st_gid}"
        return f"{path} can be changed by the group {group}"
    return None


def _chain(path: Path) -> list[Path]:
    """The path and each directory above it, nearest first."""
    absolute = Path(os.path.abspath(path))
    return [absolute, *absolute.parents]


def looked_at(path: Path) -> list[Path]:
    """Every path whose owner and mode `untrusted` judges `path` by: both chains, each path once."""
    seen = dict.fromkeys([*_chain(Path(os.path.abspath(path))), *_chain(Path(os.path.realpath(path)))])
    return list(seen)


def untrusted(path: Path, uid: int | None = None) -> str | None:
    """Why `path` is not safe for `uid` (default: this process's user) to run; None when it is."""
    uid = os.geteuid() if uid is None else uid
    checked: set[Path] = set()
    for start in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for item in _chain(start):
            if item in checked:
                continue
            checked.add(item)
            try:
                st = item.lstat()
            except OSError:
                continue  # gone, or not ours to look at: running it will say
            problem = _problem(item, st, uid)
            if problem:
                return problem
    return None
