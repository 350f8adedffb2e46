"""The notebook-status extension's name before the package had parts.

A Jupyter started by that layout was recorded with this name among its server extensions,
and the supervisor restarts it with the same command after an upgrade in place.
"""

from remote_agent.jupyter.notebook_status import _jupyter_server_extension_points, _load_jupyter_server_extension

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]
