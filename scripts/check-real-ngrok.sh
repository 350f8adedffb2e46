#!/bin/sh
# Confirms, with your real ngrok account, the ngrok behaviours remote-agent relies on:
# the dev domain, the same URL after a restart, a clean stop releasing the URL at once,
# the shape of the agent's /api/status, and how long a killed agent's session lingers.
# Reads NGROK_AUTHTOKEN (environment or .env) and PYNGROK_NGROK_PATH like serve does.
# Takes up to about two minutes; stop a running tunnel first: remote-agent stop --tunnel-only
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$here/.venv/bin/python" ]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
exec "$python" -m remote_agent.commands.live_check "$@"
