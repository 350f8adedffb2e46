"""The kernels remote-agent offers: their record (kernels.json) and the kernelspecs Jupyter reads.

Both live under REMOTE_AGENT_HOME. Jupyter finds the kernelspecs because serve puts
REMOTE_AGENT_HOME/jupyter first on its JUPYTER_PATH; it reads that folder again at each
/api/kernelspecs request, so a kernel written here appears after a page reload.

The user's own Python is written as `python3`: ahead of Jupyter's own `python3` (remote-agent's
Python) on the path, it becomes the default kernel and also runs every notebook saved with
the usual "python3" kernel name, so `import torch` works in a notebook brought from elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_agent.core.home import Home
from remote_agent.core.records import Record
from remote_agent.core.store import ensure_private_dir, write_private
from remote_agent.jupyter.python_envs import Interpreter

DEFAULT_NAME = "python3"  # the name Jupyter gives its default kernel and notebooks usually carry
NAME_PATTERN = re.compile(r"^[a-z0-9._-]+$")  # what Jupyter accepts as a kernel name
LAUNCHER = "launch.sh"


def data_dir(home: Path) -> Path:
    """The folder serve puts on Jupyter's JUPYTER_PATH."""
    return Home(home).kernelspecs


def specs_dir(home: Path) -> Path:
    return data_dir(home) / "kernels"


def jupyter_path(home: Path, existing: str | None) -> str:
    """JUPYTER_PATH for Jupyter: ours first, then whatever the user had."""
    return str(data_dir(home)) + (f":{existing}" if existing else "")


def on_jupyter_path(home: Path, value: str | None) -> bool:
    return str(data_dir(home)) in (value or "").split(":")


def stable_name(interpreter: Interpreter) -> str:
    """Derived from the environment's path only: the same environment keeps its name."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(interpreter.env_name).name.lower()).strip("-") or "python"
    digest = hashlib.sha256(interpreter.prefix.encode()).hexdigest()[:4]
    return f"{interpreter.shape}-{slug}-{digest}"


def display_name(interpreter: Interpreter) -> str:
    """E.g. "Python 3.11 (venv: pytorch)", what Jupyter's launcher and menus show."""
    where = interpreter.prefix if interpreter.shape == "system" else interpreter.env_name
    return f"Python {interpreter.short_version} ({interpreter.shape}: {where})"


@dataclass
class Offered:
    """One kernel in our folder."""

    python: str
    prefix: str
    kind: str  # venv | conda | system | added
    display_name: str

    @classmethod
    def from_interpreter(cls, interpreter: Interpreter, added: bool = False) -> Offered:
        kind = "added" if added else interpreter.shape
        return cls(interpreter.executable, interpreter.prefix, kind, display_name(interpreter))


@dataclass
class KernelRecord(Record):
    """kernels.json: what is offered under which name, and what the user removed. This module writes it."""

    VERSION = 1

    kernels: dict[str, Offered] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)  # prefixes of removed environments
    default_removed: bool = False  # the user removed the default: do not choose another
    version: int = VERSION

    @classmethod
    def read(cls, home: Path) -> KernelRecord:
        return cls.load(Home(home).kernels) or cls()

    def write(self, home: Path) -> None:
        self.save(Home(home).kernels)

    def name_of(self, prefix: str) -> str | None:
        return next((name for name, entry in self.kernels.items() if entry.prefix == prefix), None)


def _env_block(entry: Offered) -> dict[str, str]:
    """The environment's bin first on PATH (so `!pip` installs there) and its activation variables."""
    bin_dir = str(Path(entry.python).parent)
    env = {"PATH": f"{bin_dir}:${{PATH}}"}
    prefix = Path(entry.prefix)
    if (prefix / "conda-meta").is_dir():
        env["CONDA_PREFIX"] = entry.prefix
        env["CONDA_DEFAULT_ENV"] = prefix.name if prefix.parent.name == "envs" else "base"
    elif (prefix / "pyvenv.cfg").is_file():
        env["VIRTUAL_ENV"] = entry.prefix
    return env


def _activation_scripts(entry: Offered) -> Path | None:
    folder = Path(entry.prefix) / "etc" / "conda" / "activate.d"
    return folder if folder.is_dir() and any(folder.glob("*.sh")) else None


def launcher_text(entry: Offered, activate_d: Path) -> str:
    """A conda environment's kernel, started after its activation scripts (CUDA paths and the like)."""
    prefix = shlex.quote(entry.prefix)
    return (
        "#!/bin/bash\n"
        "# Written by remote-agent: runs the conda environment's activation scripts, as `conda activate`\n"
        "# does, then its kernel. Rewritten at each serve.\n"
        f"export CONDA_PREFIX={prefix}\n"
        f"for script in {shlex.quote(str(activate_d))}/*.sh; do\n"
        '    [ -r "$script" ] && . "$script"\n'
        "done\n"
        f'exec {shlex.quote(entry.python)} -m ipykernel_launcher -f "$1"\n'
    )


def kernel_json(entry: Offered, spec_dir: Path) -> tuple[dict[str, Any], str | None]:
    """kernel.json's content, and the launcher's when the environment has activation scripts."""
    activate_d = _activation_scripts(entry)
    if activate_d is not None:
        argv = ["/bin/bash", str(spec_dir / LAUNCHER), "{connection_file}"]
        launcher = launcher_text(entry, activate_d)
    else:
        # An absolute path: Jupyter would replace a bare "python" with its own interpreter.
        argv = [entry.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        launcher = None
    spec = {
        "argv": argv,
        "display_name": entry.display_name,
        "language": "python",
        "env": _env_block(entry),
        "metadata": {"remote_agent": {"python": entry.python, "kind": entry.kind}},
    }
    return spec, launcher


def _logos() -> list[Path]:
    """ipykernel's logos from remote-agent's own environment, so the launcher shows the Python icon."""
    import importlib.util

    spec = importlib.util.find_spec("ipykernel")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent / "resources").glob("logo-*.png"))


def write_specs(home: Path, record: KernelRecord) -> None:
    """Make the folder hold exactly the record's kernels; unchanged files are left alone."""
    ensure_private_dir(data_dir(home))
    folder = ensure_private_dir(specs_dir(home))
    logos: list[Path] | None = None
    for name, entry in record.kernels.items():
        spec_dir = folder / name
        spec, launcher = kernel_json(entry, spec_dir)
        text = json.dumps(spec, indent=1) + "\n"
        kernel_file = spec_dir / "kernel.json"
        if kernel_file.exists() and kernel_file.read_text() == text:
            continue
        ensure_private_dir(spec_dir)
        if launcher is not None:
            write_private(spec_dir / LAUNCHER, launcher)
        if logos is None:
            logos = _logos()
        for logo in logos:
            with contextlib.suppress(OSError):
                shutil.copyfile(logo, spec_dir / logo.name)
                (spec_dir / logo.name).chmod(0o600)
        write_private(kernel_file, text)
    for spec_dir in folder.iterdir():
        if spec_dir.name not in record.kernels and spec_dir.is_dir():
            shutil.rmtree(spec_dir, ignore_errors=True)
