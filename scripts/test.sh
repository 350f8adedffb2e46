#!/usr/bin/env bash
# Set up everything the tests need, then run them: ruff, mypy (strict), pytest.
# Usage (from the repository):  scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --dev

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
