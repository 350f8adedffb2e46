"""Jupyter's entry point in the session's window: `python -m remote_agent.jupyter.launcher notebook ARGS`.

It runs the app module exactly as `python -m notebook ARGS` would, after one change to what
Jupyter's start loads: jsonschema (through jupyter_events) imports rfc3987_syntax, which
builds an Earley parser for the IRI grammar at import, about two seconds of CPU and most of
Jupyter's start on a small server. The grammar is only needed to check a value against a
schema with `"format": "iri"`, so here it is built on that first check instead. Nothing
else of remote_agent is imported: this runs in Jupyter's process before Jupyter itself.
"""

from __future__ import annotations

import importlib
import runpy
import sys
import threading
import types
from typing import Any

IRI_GRAMMAR_MODULE = "rfc3987_syntax"


class _BuiltOnFirstUse(types.ModuleType):
    """Stands in for a module until something calls into it; then the real module is imported."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._real: types.ModuleType | None = None

    def real(self) -> types.ModuleType:
        with self._lock:
            if self._real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                self._real = importlib.import_module(self.__name__)
            return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.real(), name)


def defer_iri_grammar() -> None:
    """Let `from rfc3987_syntax import is_valid_syntax` succeed at once; build the grammar on the first call."""
    if IRI_GRAMMAR_MODULE in sys.modules:
        return
    import importlib.util

    spec = importlib.util.find_spec(IRI_GRAMMAR_MODULE)
    if spec is None:
        return  # not installed: jsonschema does without it, as it would anyway
    stand_in = _BuiltOnFirstUse(IRI_GRAMMAR_MODULE)
    stand_in.__spec__ = spec  # what importlib.util.find_spec answers about it meanwhile

    def is_valid_syntax(term: str, value: str) -> bool:
        return bool(stand_in.real().is_valid_syntax(term, value))

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[IRI_GRAMMAR_MODULE] = stand_in


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m remote_agent.jupyter.launcher APP_MODULE [ARGS...]")
    app = sys.argv.pop(1)
    defer_iri_grammar()
    runpy.run_module(app, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
