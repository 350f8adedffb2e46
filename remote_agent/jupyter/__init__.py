"""Jupyter's server: how it is started, its login (run inside Jupyter), share links, kernels.

The only part that imports jupyter_server, tornado or argon2, and the one runner of the user's interpreters.
"""
