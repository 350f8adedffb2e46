"""`logs`: Jupyter's and the keeper's logs, the last lines or followed."""

from __future__ import annotations

import time

from remote_agent.config.settings import Settings
from remote_agent.core.console import Console
from remote_agent.core.home import Home
from remote_agent.core.store import tail


def logs(settings: Settings, console: Console, lines: int, follow: bool) -> int:
    home = Home(settings.home)
    sources = {"jupyter": home.jupyter_log, "tunnel": home.keeper_log}
    if not any(p.exists() for p in sources.values()):
        console.note(f"No logs yet in {home.root}: run `remote-agent serve` first.")
        return 0
    for name, path in sources.items():
        console.line(f"==> {name}: {path} <==")
        for line in tail(path, lines):
            console.line(line)
    if not follow:
        return 0
    offsets = {name: (path.stat().st_size if path.exists() else 0) for name, path in sources.items()}
    while True:
        time.sleep(0.2)
        for name, path in sources.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < offsets[name]:
                offsets[name] = 0  # rotated or truncated
            if size > offsets[name]:
                with path.open("rb") as f:
                    f.seek(offsets[name])
                    chunk = f.read(size - offsets[name])
                offsets[name] = size
                for line in chunk.decode(errors="replace").splitlines():
                    console.line(f"[{name}] {line}")
