"""The user's Python environments as Jupyter kernels: what `serve` offers and `kernels` lists.

At each serve (and each `kernels`), the environments found on this server are asked once
(cached) whether they have ipykernel; each one that has it and is new gets a kernelspec. The
kernels belong to the session: a later serve adds, never removes a kernel or changes the
default. `kernels remove` hides an environment for good; `kernels add` brings one back.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from remote_agent.core import procs
from remote_agent.core.console import Console
from remote_agent.core.errors import RemoteAgentError
from remote_agent.core.home import Home
from remote_agent.core.store import exclusive_lock
from remote_agent.jupyter.kernelspecs import (
    DEFAULT_NAME,
    KernelRecord,
    Offered,
    on_jupyter_path,
    stable_name,
    write_specs,
)
from remote_agent.jupyter.python_envs import (
    Interpreter,
    Looked,
    ProbeCache,
    ask,
    candidates,
    install_command,
    layout,
    own_python,
    split_trusted,
)

OWN_DISPLAY_NAME = "Python 3 (ipykernel)"  # Jupyter's name for the kernel of its own Python


class KernelOptions(Protocol):
    """What kernel discovery needs to know of the user's settings (the command passes its Settings)."""

    @property
    def home(self) -> Path: ...
    @property
    def kernels(self) -> str: ...  # "off": only remote-agent's own Python
    @property
    def root_dir(self) -> Path | None: ...


@dataclass
class Outcome:
    """What a sync saw: the record after it, the environments found now, the kernels it added."""

    record: KernelRecord
    found: list[Interpreter] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # never run: another user could change them
    looked: Looked = field(default_factory=Looked)  # where discovery looked; empty when it did not


def is_own_prefix(prefix: str) -> bool:
    """remote-agent's own environment: Jupyter already offers it as its python3."""
    return os.path.realpath(prefix) == os.path.realpath(sys.prefix)


def _root_dir(settings: KernelOptions) -> Path | None:
    return settings.root_dir or Path.cwd()  # the session's notebook directory, once serve recorded it


def discover(
    settings: KernelOptions, environ: Mapping[str, str], looked: Looked | None = None
) -> tuple[list[Interpreter], Interpreter | None, list[tuple[Path, str]]]:
    """The environments found now (one per prefix), the user's own Python among them, and those not run."""
    looked = looked or Looked()
    home_dir = Path(environ.get("HOME") or Path.home())
    found = candidates(environ, home_dir, _root_dir(settings), looked=looked)
    for python in found:
        looked.interpreter(python)
    pythons, skipped = split_trusted(found)
    cache = ProbeCache(Home(settings.home).kernel_probes)
    answers = ask(pythons, cache)
    cache.save()
    looked.add(*(answer.purelib for answer in answers.values() if answer.purelib))  # the probe cache's key
    if len(answers) < len(pythons) or not cache.holds(answers):
        looked.incomplete = True  # asked again next time: it may answer, or see what was installed meanwhile
    own_path = own_python(environ)
    own = answers.get(own_path.absolute()) if own_path else None
    by_prefix: dict[str, Interpreter] = {}
    for answer in answers.values():
        if not is_own_prefix(answer.prefix):
            by_prefix.setdefault(answer.prefix, answer)
    return list(by_prefix.values()), own, skipped


def sync(settings: KernelOptions, environ: Mapping[str, str]) -> Outcome:
    """Add newly found environments to the record and make the kernelspecs folder match it."""
    home = settings.home
    Home(home).ensure()
    with exclusive_lock(Home(home).kernels_lock, "kernels"):
        record = KernelRecord.read(home)
        if settings.kernels == "off":
            write_specs(home, KernelRecord())  # only Jupyter's own python3 remains
            return Outcome(record)
        looked = Looked()
        found, own, skipped = discover(settings, environ, looked)
        outcome = Outcome(record, found, skipped=skipped, looked=looked)
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

    def __init__(self, settings: KernelOptions) -> None:
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

    def looked(self) -> Looked:
        """Where discovery looked (after finish); nowhere when kernels are off."""
        return self.outcome.looked if self.outcome is not None else Looked()

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


def check_running_jupyter(settings: KernelOptions, pid: int, console: Console) -> None:
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


def rows(settings: KernelOptions, outcome: Outcome) -> list[dict[str, Any]]:
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
