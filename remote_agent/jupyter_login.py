"""The login classes' names before the package had parts.

A Jupyter started by that layout was recorded with these names on its command line, and
the supervisor restarts it with the same command after an upgrade in place.
"""

from remote_agent.jupyter.login import RemoteAgentIdentityProvider, ThrottledLoginHandler

__all__ = ["RemoteAgentIdentityProvider", "ThrottledLoginHandler"]
