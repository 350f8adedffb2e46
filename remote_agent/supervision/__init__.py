"""tmux as the supervisor: the session, its windows, the pane-death hook and the restart policy.

It knows windows and command lines, not programs: Jupyter and the keeper register themselves.
"""
