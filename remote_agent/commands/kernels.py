"""`kernels`: list the user's Python environments as Jupyter kernels, add one, or hide one."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_agent.config.settings import Settings
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, ExitCode
from remote_agent.core.home import Home
from remote_agent.core.store import exclusive_lock
from remote_agent.jupyter.kernels import OWN_DISPLAY_NAME, is_own_prefix, rows, sync
from remote_agent.jupyter.kernelspecs import DEFAULT_NAME, NAME_PATTERN, KernelRecord, Offered, stable_name, write_specs
from remote_agent.jupyter.python_envs import (
    Interpreter,
    ProbeCache,
    ask,
    install_command,
    install_ipykernel,
    probe,
    why_not_run,
)


@dataclass
class KernelList:
    """`kernels`: what Jupyter offers, what was found without ipykernel, never run, or hidden."""

    listed: list[dict[str, Any]]
    kernels_off: bool

    exit_code = ExitCode.OK

    def document(self) -> dict[str, Any]:
        return {"kernels": self.listed}

    def lines(self) -> list[str]:
        listed = self.listed
        width = max(len(r["name"]) for r in listed) + 2
        shown = max(len(r["display_name"]) for r in listed) + 2
        out: list[str] = []

        def line(r: dict[str, Any], tail: str = "") -> None:
            out.append(f"  {r['name']:<{width}}{r['display_name']:<{shown}}{r['python']}{tail}")

        def group(heading: str, rows: list[dict[str, Any]], *hints: Callable[[dict[str, Any]], str]) -> None:
            """A heading, then each row with its hints indented under it; nothing when there are no rows."""
            if rows:
                out.append(heading)
            for r in rows:
                line(r)
                out.extend(f"  {'':<{width}}{hint(r)}" for hint in hints)

        out.append("Jupyter offers these kernels (a page reload shows changes):")
        for r in listed:
            if r["offered"]:
                line(r, "   (default)" if r["name"] == DEFAULT_NAME else "")
        group(
            "Found without ipykernel, so not offered:",
            [r for r in listed if not r["offered"] and r["fix"] and not r["skipped"]],
            lambda r: f"make it a kernel: {r['fix']}",
            lambda r: "then run `remote-agent kernels` again.",
        )
        group(
            "Found but never run, because another user could have changed them:",
            [r for r in listed if r["skipped"]],
            lambda r: f"not run: {r['skipped']}",
            lambda r: f"if you trust it: remote-agent kernels add {shlex.quote(r['python'])}",
        )
        group(
            "Hidden by `kernels remove` (`remote-agent kernels add PYTHON` offers one again):",
            [r for r in listed if not r["offered"] and not r["fix"] and not r["skipped"]],
        )
        if self.kernels_off:
            out.append("REMOTE_AGENT_KERNELS=off: only remote-agent's own Python is offered.")
        return out


def show(settings: Settings) -> KernelList:
    return KernelList(rows(settings, sync(settings, os.environ)), settings.kernels == "off")


def _interpreter_at(given: str) -> Path:
    path = Path(given).expanduser().absolute()
    if path.is_dir():
        python = next((path / "bin" / n for n in ("python", "python3") if (path / "bin" / n).exists()), None)
        if python is None:
            raise BadInput(f"{path} holds no bin/python.", "Give the environment's folder or its Python.")
        return python
    if not path.exists():
        raise BadInput(f"There is no Python at {path}.", "Give the interpreter (e.g. /opt/pytorch/bin/python).")
    return path


def _install_ipykernel(interpreter: Interpreter, console: Console) -> Interpreter:
    command = install_command(interpreter)
    console.note(f"Installing ipykernel: {shlex.join(command)}")
    try:
        returncode = install_ipykernel(interpreter)
    except OSError as e:
        raise BadInput(f"Could not run {command[0]}: {e.strerror or e}.", "Install ipykernel there yourself.") from e
    after = probe(Path(interpreter.executable))
    if returncode != 0 or after is None or not after.ipykernel:
        raise BadInput(
            f"Installing ipykernel into {interpreter.prefix} failed (exit {returncode}).",
            "Its output is above; fix that, or install ipykernel there yourself.",
        )
    return after


def add(settings: Settings, console: Console, python: str, name: str | None, install: bool) -> int:
    path = _interpreter_at(python)
    if name is not None and not NAME_PATTERN.match(name):
        raise BadInput(f"{name!r} cannot be a kernel name.", "Use lower-case letters, digits, '.', '-' and '_'.")
    home = settings.home
    Home(home).ensure()
    cache = ProbeCache(Home(home).kernel_probes)
    doubt = why_not_run(path)
    if doubt:
        console.note(f"Running {path} because you asked, although {doubt}.")
    interpreter = ask([path], cache).get(path)
    if interpreter is None:
        raise BadInput(f"{path} does not run as Python.", "Give a working interpreter, e.g. /opt/pytorch/bin/python.")
    if not interpreter.ipykernel:
        if not install:
            raise BadInput(
                f"{interpreter.executable} has no ipykernel, so Jupyter cannot run it as a kernel. Install it:",
                f"  {shlex.join(install_command(interpreter))}\n"
                "or run this again with --install-ipykernel, which does that for you.",
            )
        interpreter = _install_ipykernel(interpreter, console)
    if is_own_prefix(interpreter.prefix):
        raise BadInput(
            f"{interpreter.executable} is remote-agent's own Python.",
            f'Jupyter offers it as "{OWN_DISPLAY_NAME}" already (when no environment of yours is the default).',
        )
    with exclusive_lock(Home(home).kernels_lock, "kernels"):
        record = KernelRecord.read(home)
        current = record.name_of(interpreter.prefix)
        chosen = name or current or stable_name(interpreter)
        taken = record.kernels.get(chosen)
        if taken is not None and taken.prefix != interpreter.prefix:
            raise BadInput(f"The name {chosen!r} is taken by {taken.python}.", "Choose another with --name.")
        if current is not None and current != chosen:
            del record.kernels[current]
        entry = Offered.from_interpreter(interpreter, added=True)
        record.kernels[chosen] = entry
        record.hidden = [p for p in record.hidden if p != interpreter.prefix]
        record.write(home)
        write_specs(home, record if settings.kernels != "off" else KernelRecord())
    console.line(f"Added {chosen}: {entry.display_name}, {entry.python}")
    if settings.kernels == "off":
        console.line("REMOTE_AGENT_KERNELS=off: it is offered once that setting is auto again.")
    else:
        console.line("Reload the Jupyter page to see it; Jupyter and its running kernels are untouched.")
    return 0


def remove(settings: Settings, console: Console, name: str) -> int:
    outcome = sync(settings, os.environ)
    home = settings.home
    with exclusive_lock(Home(home).kernels_lock, "kernels"):
        record = KernelRecord.read(home)
        entry = record.kernels.pop(name, None)
        if entry is not None:
            prefix, display = entry.prefix, entry.display_name
            record.default_removed = record.default_removed or name == DEFAULT_NAME
        else:
            seen = next((i for i in outcome.found if stable_name(i) == name), None)
            if seen is None:
                raise BadInput(f"There is no kernel named {name!r}.", "`remote-agent kernels` lists them.")
            prefix, display = seen.prefix, Offered.from_interpreter(seen).display_name
        if prefix not in record.hidden:
            record.hidden.append(prefix)
        record.write(home)
        write_specs(home, record if settings.kernels != "off" else KernelRecord())
    console.line(f"Removed {name}: {display}. It stays hidden; `remote-agent kernels add {prefix}` offers it again.")
    if name == DEFAULT_NAME:
        console.line(f'Notebooks that use "{DEFAULT_NAME}" now run remote-agent\'s own Python.')
    return 0
