"""Who else can log in to this server: the other people a local attack would come from."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

NO_LOGIN_SHELLS = ("nologin", "false", "sync", "halt", "shutdown")


def can_log_in(entry: pwd.struct_passwd) -> bool:
    """An account with a login shell and a home of its own (system accounts have neither)."""
    shell = entry.pw_shell or ""
    if not shell or os.path.basename(shell) in NO_LOGIN_SHELLS or not os.path.exists(shell):
        return False
    return entry.pw_dir not in ("", "/", "/nonexistent") and os.path.isdir(entry.pw_dir)


def other_accounts(uid: int) -> list[str]:
    """Accounts other than `uid` and root that can log in (root can read everything anyway)."""
    return sorted({e.pw_name for e in pwd.getpwall() if e.pw_uid not in (uid, 0) and can_log_in(e)})


def logged_in_others(me: str) -> list[str]:
    """Users `who` shows logged in now, other than `me`."""
    who = shutil.which("who")
    if who is None:
        return []
    try:
        out = subprocess.run([who], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] != me})
