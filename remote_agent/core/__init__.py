"""What every process may load, the laptop included: the standard library only, Python 3.9.

Errors and exit codes, the console, redaction, /proc, private files and records under
REMOTE_AGENT_HOME. Nothing here imports another part of the package.
"""
