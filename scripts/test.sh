#!/usr/bin/env bash
# Set up everything the tests need, then run them: ruff, mypy (strict), pytest.
# Usage (from the repository):  scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests drive real programs: tmux, an OpenSSH server and client, Debian's Chromium,
# systemd-analyze for the unit file, and curl for the README's webhook templates.
apt_packages=(tmux openssh-server openssh-client chromium systemd curl)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing system packages: ${missing[*]}"
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

scripts/setup.sh --dev

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== import rules between the parts"
.venv/bin/lint-imports --no-cache
echo "== pytest"
# Two test files at a time: most of a test is spent waiting on Jupyter, tmux or a browser, and
# each test has its own HOME, tmux server, ports and agent. A module's tests stay in one worker.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
