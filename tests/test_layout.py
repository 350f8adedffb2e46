"""The package's parts keep their promises: what the laptop loads, and who runs which outside program.

The import rules between the parts are import-linter contracts in pyproject.toml, which
scripts/test.sh checks with `lint-imports` beside ruff and mypy; these tests check what such
contracts cannot see: what a laptop's interpreter really loads, and which module starts tmux,
ssh, systemctl or ngrok as a program.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "remote_agent"

# Each outside program is started from one place (README, "Where things live").
PROGRAM_OWNERS = {
    "tmux": {"supervision/tmux.py"},
    "ssh": {"laptop/ssh_client.py", "core/ssh_hint.py"},  # ssh_hint only prints the command for the laptop
    "systemctl": {"commands/service.py"},
    "ngrok": {"tunnel/agent.py"},
}


def test_the_laptop_side_loads_the_standard_library_and_core_only() -> None:
    """`connect` runs on a laptop's own python3 without the server's packages or modules."""
    probe = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import io, remote_agent.laptop.connect, remote_agent.laptop.connect_cli\n"
        "from remote_agent.core.console import Console\n"
        "Console(json_mode=True, out=io.StringIO()).event('forward_up')  # as `connect --json` prints\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    loaded = json.loads(done.stdout)
    ours = [m for m in loaded if m.split(".")[0] == "remote_agent"]
    assert "remote_agent.laptop.connect" in ours
    server_side = [
        m for m in ours if m != "remote_agent" and not m.startswith(("remote_agent.core", "remote_agent.laptop"))
    ]
    assert server_side == [], "the laptop side loaded server modules"
    others = sorted({m.split(".")[0] for m in loaded} - {"remote_agent"} - set(sys.stdlib_module_names))
    assert others == [], "the laptop side loaded packages beyond the standard library"


def test_the_laptop_side_and_core_are_python_39() -> None:
    """macOS's own python3 is 3.9: no syntax newer than that in what the laptop may load."""
    for path in sorted([*PACKAGE.glob("core/*.py"), *PACKAGE.glob("laptop/*.py"), PACKAGE / "__init__.py"]):
        ast.parse(path.read_text(), str(path), feature_version=(3, 9))


def _started_programs(tree: ast.AST) -> set[str]:
    """Program names a module starts or looks up: the first word of an argv list (passed to a
    call, assigned or returned), or the name given to `shutil.which`."""
    argv_lists: list[ast.expr] = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            argv_lists.append(node.args[0])
            if isinstance(node.func, ast.Attribute) and node.func.attr == "which":
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
        elif isinstance(node, (ast.Assign, ast.Return)) and node.value is not None:
            argv_lists.append(node.value)
    for value in argv_lists:
        if isinstance(value, ast.List) and value.elts:
            first = value.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def test_each_outside_program_is_started_from_its_one_module() -> None:
    found: dict[str, set[str]] = {program: set() for program in PROGRAM_OWNERS}
    for path in PACKAGE.rglob("*.py"):
        started = _started_programs(ast.parse(path.read_text()))
        for program in started & set(PROGRAM_OWNERS):
            found[program].add(path.relative_to(PACKAGE).as_posix())
    for program, owners in PROGRAM_OWNERS.items():
        assert found[program] <= owners, f"{program} is started outside {sorted(owners)}: {sorted(found[program])}"
    assert found["tmux"], "the scan no longer finds the programs it guards"
    assert found["systemctl"], "the scan no longer finds the programs it guards"
