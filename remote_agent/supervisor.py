"""The supervisor's name before the package had parts: `python -m remote_agent.supervisor`.

The pane-death hook script of a session started by that layout runs it, and keeps doing
so after an upgrade in place until the next `serve` writes the hook again.
"""

import sys

from remote_agent.supervision.supervisor import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
