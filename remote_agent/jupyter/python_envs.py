"""The user's Python environments: where they are, and what each interpreter says about itself.

Discovery only looks at files. An interpreter that another user could have changed (owned
by them, or writable by others, the file or a directory above it) is never run: it is
listed with the reason instead, and `kernels add` is the way to run it on purpose.
Asking an interpreter (its version, prefix, whether it has
ipykernel) runs it once; the answer is cached under REMOTE_AGENT_HOME, keyed by the
interpreter's path and modification time and by those of its site-packages, so a later
`pip install ipykernel` is noticed and an unchanged environment is never run again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remote_agent.core import fingerprints
from remote_agent.core.file_trust import looked_at, untrusted
from remote_agent.core.records import BadRecord, Record, build

PROBE_TIMEOUT = 20.0
CONDA_BASES = ("miniconda3", "anaconda3", "miniforge3", "mambaforge", "miniconda", "anaconda")

# Run by each interpreter: it prints what the kernel will need to know about it.
PROBE_SCRIPT = """
import importlib.util, json, os, sys, sysconfig
stdlib = sysconfig.get_paths().get("stdlib", "")
print(json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "ipykernel": importlib.util.find_spec("ipykernel") is not None,
    "purelib": sysconfig.get_paths().get("purelib", ""),
    "externally_managed": bool(stdlib) and os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED")),
}))
"""


@dataclass(frozen=True)
class Interpreter:
    """What one interpreter said about itself."""

    executable: str
    prefix: str
    version: str
    ipykernel: bool
    purelib: str
    externally_managed: bool

    @property
    def short_version(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def shape(self) -> str:
        """conda, venv or system: how the environment is laid out."""
        prefix = Path(self.prefix)
        if (prefix / "conda-meta").is_dir():
            return "conda"
        if (prefix / "pyvenv.cfg").is_file():
            return "venv"
        return "system"

    @property
    def env_name(self) -> str:
        """What a user calls the environment: its folder, or the project's for a `.venv`."""
        prefix = Path(self.prefix)
        if self.shape == "system":
            return prefix.name or "system"
        if prefix.name in (".venv", "venv", ".env", "env") and prefix.parent.name:
            return prefix.parent.name
        if self.shape == "conda" and prefix.parent.name != "envs":
            return "base"
        return prefix.name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interpreter | None:
        """An interpreter's answer (from the probe or the cache); None when it is not one."""
        try:
            return build(cls, data)
        except BadRecord:
            return None


# -- where to look ---------------------------------------------------------------------


class Looked:
    """Every place discovery looked at, as it was when it looked: a new or changed environment changes one.

    A serve answered from its record (commands/warm_answer.py) holds these, so that what
    discovery would find now is never skipped.
    """

    def __init__(self) -> None:
        self.files: dict[str, list[int] | None] = {}  # each file or folder whose change could change what is found
        self.folders: dict[str, list[str] | None] = {}  # each folder whose subfolders could (not its other files)
        self.trust: dict[str, list[int] | None] = {}  # each path whose owner or mode could make one (un)trusted
        # An interpreter that gave no answer, or whose packages changed while it was asked: the
        # next discovery may find more than this one did, so nothing may be taken from it.
        self.incomplete = False

    def add(self, *paths: Path | str) -> None:
        for path in paths:
            self.files.setdefault(str(path), fingerprints.signature(str(path)))

    def subfolders_of(self, folder: Path) -> None:
        self.folders.setdefault(str(folder), fingerprints.subfolders(str(folder)))

    def path_dirs(self, environ: Mapping[str, str]) -> None:
        # An empty entry is the current directory, for shutil.which as for a shell.
        self.add(*(d or os.getcwd() for d in environ.get("PATH", os.defpath).split(os.pathsep)))

    def interpreter(self, python: Path) -> None:
        """What the trust check and the probe cache read of one interpreter."""
        prefix = python.parent.parent
        site_packages = sorted(prefix.glob("lib/python3*/site-packages"))
        self.add(python, python.parent, prefix / "pyvenv.cfg", prefix / "lib", *site_packages)
        # The chains why_not_run judges: the interpreter's, pyvenv.cfg's and each site-packages'.
        for checked in (python, prefix / "pyvenv.cfg", *site_packages):
            for path in looked_at(checked):
                self.trust.setdefault(str(path), fingerprints.owner_and_mode(str(path)))


def own_python(environ: Mapping[str, str], looked: Looked | None = None) -> Path | None:
    """The user's own Python: the active environment, else python3 on PATH."""
    looked = looked or Looked()
    for key in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        prefix = environ.get(key)
        if prefix:
            looked.add(Path(prefix) / "bin")
        if prefix and (Path(prefix) / "bin" / "python").exists():
            return Path(prefix) / "bin" / "python"
    looked.path_dirs(environ)
    found = shutil.which("python3", path=environ.get("PATH", os.defpath))
    return Path(found) if found else None


def _prefix_python(prefix: Path) -> Path | None:
    for name in ("python", "python3"):
        if (prefix / "bin" / name).exists():
            return prefix / "bin" / name
    return None


def _conda_prefixes(home: Path, environ: Mapping[str, str], looked: Looked) -> list[Path]:
    """Conda environments: those conda has recorded, and every base's envs/."""
    listed: list[Path] = []
    looked.add(home / ".conda", home / ".conda" / "environments.txt")
    try:
        lines = (home / ".conda" / "environments.txt").read_text().splitlines()
    except OSError:
        lines = []
    listed += [Path(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    bases = [home / name for name in CONDA_BASES] + [Path("/opt/conda")]
    if environ.get("CONDA_EXE"):
        bases.append(Path(environ["CONDA_EXE"]).parent.parent)
    bases += [p for p in listed if (p / "envs").is_dir()]
    for base in bases:
        looked.add(base, base / "envs")
        if (base / "conda-meta").is_dir():
            listed.append(base)
        envs = base / "envs"
        if envs.is_dir():
            listed += sorted(p for p in envs.iterdir() if (p / "conda-meta").is_dir())
    return listed


def candidates(
    environ: Mapping[str, str],
    home: Path,
    root_dir: Path | None,
    opt: Path = Path("/opt"),
    looked: Looked | None = None,
) -> list[Path]:
    """Interpreters worth asking, the user's own first, each once (by path)."""
    looked = looked or Looked()
    found: list[Path] = []
    own = own_python(environ, looked)
    if own is not None:
        found.append(own)
    looked.path_dirs(environ)
    on_path = shutil.which("python3", path=environ.get("PATH", os.defpath))
    if on_path:
        found.append(Path(on_path))
    prefixes = _conda_prefixes(home, environ, looked)
    if root_dir is not None:
        prefixes.append(root_dir / ".venv")
        # Not the notebook folder's own time, which each save of a notebook changes: its projects,
        # and whether each has a .venv.
        looked.subfolders_of(root_dir)
        with contextlib.suppress(OSError):
            looked.add(*(p / ".venv" for p in root_dir.iterdir() if p.is_dir()))
        prefixes += sorted(root_dir.glob("*/.venv"))
    looked.add(opt)
    if opt.is_dir():
        looked.add(*opt.iterdir())
        prefixes += sorted(p for p in opt.iterdir() if (p / "pyvenv.cfg").is_file())
    for prefix in prefixes:
        looked.add(prefix, prefix / "bin")
        python = _prefix_python(prefix)
        if python is not None:
            found.append(python)
    unique: dict[str, Path] = {}
    for python in found:
        unique.setdefault(str(python.absolute()), python.absolute())
    return list(unique.values())


def why_not_run(python: Path, uid: int | None = None) -> str | None:
    """Why running this interpreter would run code someone else can change; None when it would not.

    Besides the interpreter, its environment's pyvenv.cfg and site-packages run at its start.
    """
    problem = untrusted(python, uid)
    if problem:
        return problem
    prefix = python.parent.parent
    for path in (prefix / "pyvenv.cfg", *sorted(prefix.glob("lib/python3*/site-packages"))):
        if path.exists():
            problem = untrusted(path, uid)
            if problem:
                return problem
    return None


def split_trusted(pythons: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The interpreters safe to run, and the others with the reason each is not run."""
    trusted: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for python in pythons:
        reason = why_not_run(python)
        if reason is None:
            trusted.append(python)
        else:
            skipped.append((python, reason))
    return trusted, skipped


def layout(python: Path) -> tuple[str, str, str]:
    """(shape, name, prefix) of an environment judged from its files only, without running it."""
    prefix = python.parent.parent
    shape = "conda" if (prefix / "conda-meta").is_dir() else "venv" if (prefix / "pyvenv.cfg").is_file() else "system"
    name = prefix.parent.name if prefix.name in (".venv", "venv", ".env", "env") else prefix.name
    return shape, name or "python", str(prefix)


# -- asking the interpreters, once --------------------------------------------------------


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def probe(python: Path) -> Interpreter | None:
    """Run the interpreter once; None when it does not run."""
    try:
        result = subprocess.run(
            [str(python), "-c", PROBE_SCRIPT],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        data = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return Interpreter.from_dict(data) if isinstance(data, dict) else None


@dataclass
class ProbeFile(Record):
    """kernel-probes.json: each interpreter's answer, with the file times it was given at."""

    VERSION = 1

    interpreters: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION


class ProbeCache:
    """The interpreters' answers, in REMOTE_AGENT_HOME/kernel-probes.json (this module writes it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Any] = (ProbeFile.load(path) or ProbeFile()).interpreters
        self.changed = False

    def get(self, python: Path) -> Interpreter | None:
        entry = self.entries.get(str(python))
        if not isinstance(entry, dict) or entry.get("mtime_ns") != _mtime(str(python)):
            return None
        answer = Interpreter.from_dict(entry.get("answer") or {})
        if answer is None or entry.get("purelib_mtime_ns") != _mtime(answer.purelib):
            return None
        return answer

    def put(self, python: Path, answer: Interpreter) -> None:
        self.entries[str(python)] = {
            "mtime_ns": _mtime(str(python)),
            "purelib_mtime_ns": _mtime(answer.purelib),
            "answer": asdict(answer),
        }
        self.changed = True

    def holds(self, answers: Mapping[Path, Interpreter]) -> bool:
        """Whether each answer is still the one on record: its packages unchanged since it was given."""
        return all(self.get(python) == answer for python, answer in answers.items())

    def save(self) -> None:
        if self.changed:
            ProbeFile(self.entries).save(self.path)
            self.changed = False


def ask(pythons: Iterable[Path], cache: ProbeCache) -> dict[Path, Interpreter]:
    """Each interpreter's answer, from the cache or by running it (several at once)."""
    answers: dict[Path, Interpreter] = {}
    missing = []
    for python in pythons:
        cached = cache.get(python)
        if cached is not None:
            answers[python] = cached
        else:
            missing.append(python)
    if missing:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            for python, answer in zip(missing, pool.map(probe, missing), strict=True):
                if answer is not None:
                    answers[python] = answer
                    cache.put(python, answer)
    return {python: answers[python] for python in pythons if python in answers}


def install_command(interpreter: Interpreter) -> list[str]:
    """The one command that puts ipykernel into this environment."""
    if interpreter.shape == "conda":
        conda = conda_executable(Path(interpreter.prefix))
        if conda is not None:
            return [str(conda), "install", "-y", "-p", interpreter.prefix, "ipykernel"]
    if interpreter.externally_managed and interpreter.executable.startswith("/usr/bin/"):
        # A Debian/Ubuntu system Python refuses pip (PEP 668); its package manager has ipykernel.
        return ["sudo", "apt", "install", "-y", "python3-ipykernel"]
    return [interpreter.executable, "-m", "pip", "install", "ipykernel"]


def install_ipykernel(interpreter: Interpreter) -> int:
    """Run install_command, its output on stderr for the user to follow; its exit code."""
    import sys

    command = install_command(interpreter)
    done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False, stdin=subprocess.DEVNULL)
    return done.returncode


def conda_executable(prefix: Path) -> Path | None:
    """conda for a conda environment: its base's (prefix/../../bin/conda), its own, or the one on PATH."""
    for path in (prefix.parent.parent / "bin" / "conda", prefix / "bin" / "conda", prefix / "condabin" / "conda"):
        if path.exists():
            return path
    found = shutil.which("conda")
    return Path(found) if found else None
