"""remote_agent: Jupyter on a remote server, kept alive in tmux, reachable through ngrok or SSH."""

__version__ = "0.1.0"
