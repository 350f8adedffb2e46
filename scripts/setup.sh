#!/usr/bin/env bash
# Set up remote-agent on a fresh Ubuntu/Debian or Amazon Linux server:
# tmux and a Python >= 3.10 with venv from the system's packages, then a virtual
# environment in .venv with remote-agent and Jupyter installed into it.
# Usage (from the repository):  scripts/setup.sh            (add --dev for the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="server"
[ "${1:-}" = "--dev" ] && extras="server,test"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The server side (Jupyter, libtmux) needs Python 3.10 or newer. Amazon Linux 2023's python3
# stays 3.9 for the life of the release, with newer ones beside it (python3.11, ...).
python_is_suitable() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1
}
find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_is_suitable "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

python=""
if [ -x .venv/bin/python ] && python_is_suitable .venv/bin/python; then
  python=.venv/bin/python
elif [ -e .venv ]; then
  echo "Replacing .venv: it was made with a Python older than 3.10"
  rm -rf .venv
fi
[ -n "$python" ] || python="$(find_python || true)"

if [ -z "$python" ]; then
  if command -v dnf >/dev/null 2>&1; then
    # Amazon Linux 2023 / Fedora: a newer Python beside the system's, with venv and pip.
    echo "Installing Python 3.11 (this system's python3 is older than 3.10)"
    sudo_if_needed dnf install -y -q python3.11 python3.11-pip
  elif command -v apt-get >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
    newest="$(apt-cache pkgnames python3.1 2>/dev/null | grep -E '^python3\.1[0-9]$' | sort -V | tail -n 1 || true)"
    if [ -n "$newest" ]; then
      echo "Installing $newest (this system's python3 is older than 3.10)"
      sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$newest" "$newest-venv"
    fi
  fi
  python="$(find_python || true)"
fi
if [ -z "$python" ]; then
  found="$(command -v python3 >/dev/null 2>&1 && python3 -V 2>&1 || echo "no python3")"
  echo "remote-agent's server side needs Python 3.10 or newer; this system has $found." >&2
  echo "Install one (Ubuntu 20.04: sudo add-apt-repository ppa:deadsnakes/ppa && sudo apt-get install python3.11 python3.11-venv;" >&2
  echo "Amazon Linux 2023: sudo dnf install python3.11), then run scripts/setup.sh again." >&2
  exit 4
fi

need_packages=()
command -v tmux >/dev/null 2>&1 || need_packages+=(tmux)
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  # Debian and Ubuntu ship venv apart from Python itself, one package per version.
  need_packages+=("$(basename "$python")-venv")
fi
if [ "${#need_packages[@]}" -gt 0 ]; then
  echo "Installing system packages: ${need_packages[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}"
  elif command -v dnf >/dev/null 2>&1; then
    sudo_if_needed dnf install -y -q tmux
  elif command -v yum >/dev/null 2>&1; then
    sudo_if_needed yum install -y -q tmux
  else
    echo "Install these with your package manager, then run this again: ${need_packages[*]}" >&2
    exit 4
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtual environment in .venv with $("$python" -V 2>&1) ($python)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$extras" = "server,test" ]; then
  .venv/bin/python -m pip install -q -e ".[$extras]"
else
  .venv/bin/python -m pip install -q ".[$extras]"
fi
echo "remote-agent is installed: .venv/bin/remote-agent (or: .venv/bin/python -m remote_agent)"
