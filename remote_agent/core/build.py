"""Which remote-agent code runs: a digest that changes when the package is upgraded in place."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path


def code_build() -> str:
    """A short digest of remote-agent's own source files, to notice an upgrade under a running session."""
    package = Path(__file__).resolve().parents[1]  # remote_agent/, every part of it
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        with contextlib.suppress(OSError):
            st = path.stat()
            digest.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]
