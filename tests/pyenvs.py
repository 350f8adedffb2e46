"""Real Python environments for the kernel tests, built once per test run.

- `analysis`: a project venv (…/analysis/.venv) with ipykernel, the user's active one;
- `scratch`: a project venv without ipykernel (pip included, for --install-ipykernel);
- `ml`: a prefix shaped like a conda environment (…/miniconda3/envs/ml, with conda-meta and
  an etc/conda/activate.d script that sets a variable); conda itself cannot be installed here.

Each holds a module only it has (`ra_only_in_NAME`). ipykernel and its dependencies are not
installed again into each: a .pth file adds remote-agent's own site-packages (the same
Python), which is what an environment that has ipykernel looks like to the interpreter. The
scratch one sees every dependency of ipykernel that way, but not ipykernel itself, so that
`--install-ipykernel` really runs pip for ipykernel alone.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

CUDA_VARIABLE = "RA_TEST_CUDA_HOME"
CUDA_VALUE = "/opt/fake-cuda-12"


@dataclass(frozen=True)
class PythonEnv:
    prefix: Path
    module: str  # importable only in this environment

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def purelib(self) -> Path:
        found = sorted((self.prefix / "lib").glob("python3*/site-packages"))
        assert found, f"no site-packages under {self.prefix}"
        return found[0]


@dataclass(frozen=True)
class PythonEnvs:
    analysis: PythonEnv
    scratch: PythonEnv
    ml: PythonEnv
    conda_base: Path

    @property
    def projects(self) -> Path:
        """A notebook directory whose projects have their own .venv."""
        return self.analysis.prefix.parent.parent

    def environments_txt(self) -> str:
        """What conda writes into ~/.conda/environments.txt: the base and each environment."""
        return f"{self.conda_base}\n{self.ml.prefix}\n"


def _venv(prefix: Path, with_pip: bool) -> None:
    base_python = getattr(sys, "_base_executable", sys.executable)
    args = [base_python, "-m", "venv", str(prefix)]
    if not with_pip:
        args.append("--without-pip")
    subprocess.run(args, check=True, capture_output=True, timeout=180)


def _own_module(env: PythonEnv) -> None:
    (env.purelib / f"{env.module}.py").write_text(f"WHERE = {str(env.prefix)!r}\n")


def _without_ipykernel(site_packages: Path, into: Path) -> Path:
    """A folder with links to every package of `site_packages` but ipykernel."""
    into.mkdir()
    for entry in site_packages.iterdir():
        if entry.name.startswith(("ipykernel", "__pycache__", "_remote_agent", "__editable__")):
            continue
        (into / entry.name).symlink_to(entry)
    return into


def venv_with_ipykernel(prefix: Path, module: str) -> PythonEnv:
    """One more venv with ipykernel (and its own module), for a single test."""
    env = PythonEnv(prefix, module)
    _venv(prefix, with_pip=False)
    _own_module(env)
    (env.purelib / "remote_agent_ipykernel.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n")
    return env


def build(root: Path) -> PythonEnvs:
    ours = Path(sysconfig.get_paths()["purelib"])
    analysis = PythonEnv(root / "projects" / "analysis" / ".venv", "ra_only_in_analysis")
    scratch = PythonEnv(root / "projects" / "scratch" / ".venv", "ra_only_in_scratch")
    conda_base = root / "miniconda3"
    ml = PythonEnv(conda_base / "envs" / "ml", "ra_only_in_ml")

    _venv(analysis.prefix, with_pip=False)
    _venv(scratch.prefix, with_pip=True)
    _venv(ml.prefix, with_pip=False)
    (conda_base / "conda-meta").mkdir(parents=True)
    (ml.prefix / "conda-meta").mkdir()
    (ml.prefix / "conda-meta" / "history").write_text("==> 2026-01-01 00:00:00 <==\n")
    activate_d = ml.prefix / "etc" / "conda" / "activate.d"
    activate_d.mkdir(parents=True)
    (activate_d / "cuda.sh").write_text(f"export {CUDA_VARIABLE}={CUDA_VALUE}\n")
    for env in (analysis, scratch, ml):
        _own_module(env)
    (analysis.purelib / "remote_agent_ipykernel.pth").write_text(f"{ours}\n")
    (ml.purelib / "remote_agent_ipykernel.pth").write_text(f"{ours}\n")
    deps = _without_ipykernel(ours, root / "ipykernel-dependencies")
    (scratch.purelib / "remote_agent_ipykernel_deps.pth").write_text(f"{deps}\n")
    return PythonEnvs(analysis, scratch, ml, conda_base)
