"""A running Jupyter seen from outside: does it answer, which of its children are kernels, are they busy.

With a loopback request and /proc alone (core/loopback.py, core/procs.py), so that `status` and
a warm `serve`, even answered from their records before the CLI loads (commands/quick.py), can
tell without importing Jupyter's server.
"""

from __future__ import annotations

import time

from remote_agent.core import loopback, procs

# Jupyter's own busy/idle is behind the login, which status cannot pass: a kernel counts
# as busy when it (or a program its cell started) is seen running on a CPU during a few
# quick looks at /proc, which costs `status` about 30 ms instead of a long CPU sample.
LOOKS = 4
LOOK_INTERVAL = 0.008


def answers(port: int, timeout: float = 1.0) -> bool:
    """True when a Jupyter server answers on 127.0.0.1:port (/api needs no login)."""
    answer = loopback.get(port, "/api", timeout, limit=4096)
    return answer is not None and answer[0] == 200 and b'"version"' in answer[1]


def kernel_pids(jupyter_pid: int) -> list[int]:
    """Kernels are Jupyter's children started with a kernel connection file."""
    found = []
    for child in procs.children(jupyter_pid):
        argv = procs.cmdline(child)
        if any("kernel-" in part and part.endswith(".json") for part in argv):
            found.append(child)
    return found


def kernel_activity(jupyter_pid: int) -> tuple[int, int]:
    """(busy, idle) kernels, by a few looks at their process trees' run states."""
    kernels = kernel_pids(jupyter_pid)
    # The trees are read once: each look then reads only their processes' states.
    trees = {kernel: (kernel, *procs.descendants(kernel)) for kernel in kernels}
    busy: set[int] = set()
    for look in range(LOOKS if kernels else 0):
        for kernel, tree in trees.items():
            if kernel not in busy and any(procs.on_cpu(p) for p in tree):
                busy.add(kernel)
        if len(busy) == len(kernels):
            break
        if look < LOOKS - 1:
            time.sleep(LOOK_INTERVAL)
    return len(busy), len(kernels) - len(busy)
