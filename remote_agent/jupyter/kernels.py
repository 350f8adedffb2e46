"""The user's Python environments as Jupyter kernels: what `serve` offers and the `kernels` command.

At each serve (and each `kernels`), the environments found on this server are asked once
(cached) whether they have ipykernel; each one that has it and is new gets a kernelspec. The
kernels belong to the session: a later serve adds, never removes a kernel or changes the
default. `kernels remove` hides an environment for good; `kernels add` brings one back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_agent.config.settings import Settings
from remote_agent.core import procs
from remote_agent.core.console import Console
from remote_agent.core.errors import BadInput, RemoteAgentError
from remote_agent.core.home import Home
from remote_agent.core.store import exclusive_lock
from remote_agent.jupyter.kernelspecs import (
    DEFAULT_NAME,
    NAME_PATTERN,
    KernelRecord,
    Offered,
    on_jupyter_path,
    stable_name,
    write_specs,
)
from remote_agent.jupyter.python_envs import (
    Interpreter,
    ProbeCache,
    ask,
    candidates,
    install_command,
    layout,
    own_python,
    probe,
    split_trusted,
    why_not_run,
)

OWN_DISPLAY_NAME = "Python 3 (ipykernel)"  # Jupyter's name for the kernel of its own Python


@dataclass
class Outcome:
    """What a sync saw: the record after it, the environments found now, the kernels it added."""

    record: KernelRecord
    found: list[Interpreter] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # never run: another user could change them


def _is_own_prefix(prefix: str) -> bool:
    """remote-agent's own environment: Jupyter already offers it as its python3."""
    return os.path.realpath(prefix) == os.path.realpath(sys.prefix)


def _root_dir(settings: Settings) -> Path | None:
    return settings.root_dir or Path.cwd()  # the session's notebook directory, once serve recorded it


def discover(
    settings: Settings, environ: Mapping[str, str]
) -> tuple[list[Interpreter], Interpreter | None, list[tuple[Path, str]]]:
    """The environments found now (one per prefix), the user's own Python among them, and those not run."""
    home_dir = Path(environ.get("HOME") or Path.home())
    pythons, skipped = split_trusted(candidates(environ, home_dir, _root_dir(settings)))
    cache = ProbeCache(Home(settings.home).kernel_probes)
    answers = ask(pythons, cache)
    cache.save()
    own_path = own_python(environ)
    own = answers.get(own_path.absolute()) if own_path else None
    by_prefix: dict[str, Interpreter] = {}
    for answer in answers.values():
        if not _is_own_prefix(answer.prefix):
            by_prefix.setdefault(answer.prefix, answer)
    return list(by_prefix.values()), own, skipped


def sync(settings: Settings, environ: Mapping[str, str]) -> Outcome:
    """Add newly found environments to the record and make the kernelspecs folder match it."""
    home = settings.home
    Home(home).ensure()
    with exclusive_lock(home / "kernels.lock", "kernels"):
        record = KernelRecord.read(home)
        if settings.kernels == "off":
            write_specs(home, KernelRecord())  # only Jupyter's own python3 remains
            return Outcome(record)
        found, own, skipped = discover(settings, environ)
        outcome = Outcome(record, found, skipped=skipped)
        offerable = [i for i in found if i.ipykernel and i.prefix not in record.hidden]
        if (
            DEFAULT_NAME not in record.kernels
            and not record.default_removed
            and own is not None
            and own in offerable
            and record.name_of(own.prefix) is None
        ):
            record.kernels[DEFAULT_NAME] = Offered.from_interpreter(own)
            outcome.added.append(DEFAULT_NAME)
        for interpreter in offerable:
            if record.name_of(interpreter.prefix) is None:
                name = stable_name(interpreter)
                record.kernels[name] = Offered.from_interpreter(interpreter)
                outcome.added.append(name)
        if outcome.added:
            record.write(home)
        write_specs(home, record)
        return outcome


# -- serve's part ---------------------------------------------------------------------------


class BackgroundSync:
    """serve's sync, on a thread, so that a warm serve prints its URL without waiting for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kernels", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.outcome = sync(self.settings, os.environ)
        except BaseException as e:  # reported by finish(); kernels never stop a serve
            self.error = e

    def finish(self, console: Console) -> None:
        self._thread.join()
        if self.error is not None:
            detail = self.error.message if isinstance(self.error, RemoteAgentError) else repr(self.error)
            console.warn(f"Could not update the kernels: {detail}")
            return
        outcome = self.outcome
        if outcome is None or not outcome.added:
            return
        for name in outcome.added:
            entry = outcome.record.kernels[name]
            default = ", the default" if name == DEFAULT_NAME else ""
            console.line(f"Kernel      {entry.display_name} ({name}{default}): {entry.python}")
        console.line("            A page reload shows it; `remote-agent kernels` lists them all.")


def check_running_jupyter(settings: Settings, pid: int, console: Console) -> None:
    """A Jupyter started by an earlier version does not read our kernels folder: say when it will."""
    if settings.kernels == "off":
        return
    environment = procs.environ(pid)
    if environment and not on_jupyter_path(settings.home, environment.get("JUPYTER_PATH")):
        console.note(
            f"Jupyter (pid {pid}) was started by an earlier remote-agent and does not offer your Python "
            "environments yet. It will from its next start: `remote-agent stop`, then serve "
            "(running kernels end then)."
        )


# -- the `kernels` command --------------------------------------------------------------------


def rows(settings: Settings, outcome: Outcome) -> list[dict[str, Any]]:
    """The `kernels --json` entries: offered kernels first (the default on top), then the rest."""
    record = outcome.record
    listed: list[dict[str, Any]] = []

    def row(
        name: str,
        display: str,
        python: str,
        kind: str,
        ipykernel: bool,
        offered: bool,
        fix: str | None,
        skipped: str | None = None,
    ) -> None:
        listed.append(
            {
                "name": name,
                "display_name": display,
                "python": python,
                "kind": kind,
                "ipykernel": ipykernel,
                "offered": offered,
                "fix": fix,
                "skipped": skipped,  # why it was never run (another user could change it), else null
            }
        )

    if settings.kernels == "off" or DEFAULT_NAME not in record.kernels:
        row(DEFAULT_NAME, OWN_DISPLAY_NAME, sys.executable, "remote-agent", True, True, None)
    if settings.kernels == "off":
        return listed
    found = {i.prefix: i for i in outcome.found}
    ordered = sorted(record.kernels.items(), key=lambda item: (item[0] != DEFAULT_NAME, item[0]))
    for name, entry in ordered:
        seen = found.get(entry.prefix)
        has_ipykernel = seen.ipykernel if seen is not None else True
        fix = None if has_ipykernel or seen is None else shlex.join(install_command(seen))
        row(name, entry.display_name, entry.python, entry.kind, has_ipykernel, True, fix)
    for interpreter in sorted(outcome.found, key=lambda i: i.prefix):
        if record.name_of(interpreter.prefix) is not None:
            continue
        hidden = interpreter.prefix in record.hidden
        fix = None if interpreter.ipykernel or hidden else shlex.join(install_command(interpreter))
        row(
            stable_name(interpreter),
            Offered.from_interpreter(interpreter).display_name,
            interpreter.executable,
            interpreter.shape,
            interpreter.ipykernel,
            False,
            fix,
        )
    offered_pythons = {entry.python for entry in record.kernels.values()}
    for python, reason in sorted(outcome.skipped):
        if str(python) in offered_pythons:
            continue  # offered on purpose (`kernels add`)
        shape, env_name, prefix = layout(python)
        digest = hashlib.sha256(prefix.encode()).hexdigest()[:4]
        slug = re.sub(r"[^a-z0-9]+", "-", env_name.lower()).strip("-") or "python"
        row(
            f"{shape}-{slug}-{digest}", f"not run ({shape}: {env_name})", str(python), shape, False, False, None, reason
        )
    return listed


def show(settings: Settings, console: Console, as_json: bool) -> int:
    outcome = sync(settings, os.environ)
    listed = rows(settings, outcome)
    if as_json:
        print(json.dumps({"kernels": listed}))
        return 0
    offered = [r for r in listed if r["offered"]]
    width = max(len(r["name"]) for r in listed) + 2
    shown = max(len(r["display_name"]) for r in listed) + 2

    def line(r: dict[str, Any], tail: str = "") -> None:
        console.line(f"  {r['name']:<{width}}{r['display_name']:<{shown}}{r['python']}{tail}")

    console.line("Jupyter offers these kernels (a page reload shows changes):")
    for r in offered:
        line(r, "   (default)" if r["name"] == DEFAULT_NAME else "")
    missing = [r for r in listed if not r["offered"] and r["fix"] and not r["skipped"]]
    if missing:
        console.line("Found without ipykernel, so not offered:")
        for r in missing:
            line(r)
            console.line(f"  {'':<{width}}make it a kernel: {r['fix']}")
            console.line(f"  {'':<{width}}then run `remote-agent kernels` again.")
    skipped = [r for r in listed if r["skipped"]]
    if skipped:
        console.line("Found but never run, because another user could have changed them:")
        for r in skipped:
            line(r)
            console.line(f"  {'':<{width}}not run: {r['skipped']}")
            console.line(f"  {'':<{width}}if you trust it: remote-agent kernels add {shlex.quote(r['python'])}")
    hidden = [r for r in listed if not r["offered"] and not r["fix"] and not r["skipped"]]
    if hidden:
        console.line("Hidden by `kernels remove` (`remote-agent kernels add PYTHON` offers one again):")
        for r in hidden:
            line(r)
    if settings.kernels == "off":
        console.line("REMOTE_AGENT_KERNELS=off: only remote-agent's own Python is offered.")
    return 0


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
        result = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise BadInput(f"Could not run {command[0]}: {e.strerror or e}.", "Install ipykernel there yourself.") from e
    after = probe(Path(interpreter.executable))
    if result.returncode != 0 or after is None or not after.ipykernel:
        raise BadInput(
            f"Installing ipykernel into {interpreter.prefix} failed (exit {result.returncode}).",
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
    if _is_own_prefix(interpreter.prefix):
        raise BadInput(
            f"{interpreter.executable} is remote-agent's own Python.",
            f'Jupyter offers it as "{OWN_DISPLAY_NAME}" already (when no environment of yours is the default).',
        )
    with exclusive_lock(home / "kernels.lock", "kernels"):
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
    with exclusive_lock(home / "kernels.lock", "kernels"):
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
