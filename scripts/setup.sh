#!/usr/bin/env bash
# Set up remote-agent on a fresh Ubuntu/Debian or Amazon Linux server:
# tmux and Python's venv from the system's packages, then a virtual environment
# in .venv with remote-agent and Jupyter installed into it.
# Usage (from the repository):  scripts/setup.sh            (add --dev for the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--dev" ] && extra="[test]"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_packages=()
command -v tmux >/dev/null 2>&1 || need_packages+=(tmux)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_packages+=(python3-venv)
if [ "${#need_packages[@]}" -gt 0 ]; then
  echo "Installing system packages: ${need_packages[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}"
  elif command -v dnf >/dev/null 2>&1; then
    # Amazon Linux 2023 / Fedora: venv ships with python3 itself.
    sudo_if_needed dnf install -y -q tmux python3 python3-pip
  elif command -v yum >/dev/null 2>&1; then
    sudo_if_needed yum install -y -q tmux python3 python3-pip
  else
    echo "Install these with your package manager, then run this again: ${need_packages[*]}" >&2
    exit 4
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtual environment in .venv"
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "$extra" ]; then
  # compat: a path entry instead of an import hook, which every command would pay for at start-up
  .venv/bin/python -m pip install -q -e ".$extra" --config-settings editable_mode=compat
else
  .venv/bin/python -m pip install -q .
fi
echo "remote-agent is installed: .venv/bin/remote-agent (or: .venv/bin/python -m remote_agent)"
