"""Jupyter's launcher: the app runs as `python -m APP` would, without building the IRI grammar at start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Stands in for Jupyter's app module: it imports what Jupyter's start imports for event
# validation (jupyter_events, hence jsonschema's format checks), then reports what it sees.
PROBE = """
import json, sys
import jupyter_events  # noqa: F401
import jsonschema
built = "rfc3987_syntax.syntax_helpers" in sys.modules
checker = jsonschema.Draft7Validator.FORMAT_CHECKER
print(json.dumps({
    "argv": sys.argv[1:],
    "built_at_start": built,
    "iri_checked": "iri" in checker.checkers,
    "good_iri": checker.conforms("https://example.org/caf\\u00e9?q=1", "iri"),
    "bad_iri": checker.conforms("no scheme here", "iri"),
}))
"""


def run_probe(tmp_path: Path, *argv: str) -> dict[str, object]:
    (tmp_path / "probe_app.py").write_text(PROBE)
    result = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_the_app_gets_its_arguments_and_iri_checks_still_hold_without_the_grammar_built_at_start(
    tmp_path: Path,
) -> None:
    seen = run_probe(tmp_path, "-m", "remote_agent.jupyter.launcher", "probe_app", "--ServerApp.port=1", "--no-browser")
    assert seen["argv"] == ["--ServerApp.port=1", "--no-browser"]
    assert seen["built_at_start"] is False
    # The check itself is unchanged: the grammar is built when a value is first checked.
    assert seen["iri_checked"] is True
    assert seen["good_iri"] is True
    assert seen["bad_iri"] is False


def test_started_as_plain_module_the_grammar_is_built_at_import(tmp_path: Path) -> None:
    """What the launcher avoids, seen the same way (so the test above can tell the difference)."""
    seen = run_probe(tmp_path, "-m", "probe_app")
    assert seen["built_at_start"] is True
    assert seen["good_iri"] is True
    assert seen["bad_iri"] is False
