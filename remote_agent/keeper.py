"""The keeper's name before the package had parts: `python -m remote_agent.keeper`.

Keepers started by that layout show it in their command line and, after an upgrade in
place, the tmux window that restarts them still runs it. New keepers run
`remote_agent.tunnel.keeper`.
"""

from remote_agent.tunnel.keeper import main

if __name__ == "__main__":
    raise SystemExit(main())
