"""One base for every record remote-agent keeps in a JSON file: typed, versioned, migrated.

A record is a dataclass whose last field is `version`. Reading one (`from_dict`) checks it
against the class: a record written by a newer remote-agent, or missing a field that has no
default, is refused with a `BadRecord` that says which; an optional field of the wrong type
falls back to its default (whoever writes the record next writes it whole again); a record
of an older version is brought up to date by the class's `MIGRATIONS`, one version at a time.
`load` treats a refused record like a missing one: a damaged file must not stop a session.
A field with `metadata={"stored": False}` is never written to the file nor read from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from remote_agent.core.store import read_json, write_json

R = TypeVar("R", bound="Record")
T = TypeVar("T")
Migration = Callable[[dict[str, Any]], dict[str, Any]]


class BadRecord(ValueError):
    """A record that cannot be read as its class: the message says what is wrong with it."""


class Record:
    """Mixed into a dataclass with a `version: int` field. Subclasses set the class variables."""

    VERSION: ClassVar[int] = 1
    # The version a file without a version field has (written before records had one); None: refused.
    UNVERSIONED: ClassVar[int | None] = None
    # MIGRATIONS[n] turns the fields of version n into those of version n + 1.
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}

    @classmethod
    def from_dict(cls: type[R], data: object) -> R:
        if not isinstance(data, dict):
            raise BadRecord(f"{cls.__name__}: not a JSON object")
        version = data.get("version", cls.UNVERSIONED)
        if not isinstance(version, int) or isinstance(version, bool):
            raise BadRecord(f"{cls.__name__}: no version")
        if version > cls.VERSION:
            raise BadRecord(
                f"{cls.__name__}: version {version} is from a newer remote-agent (this one reads {cls.VERSION})"
            )
        values = dict(data)
        while version < cls.VERSION:
            migrate = cls.MIGRATIONS.get(version)
            if migrate is None:
                raise BadRecord(f"{cls.__name__}: version {version} is too old to read")
            values = migrate(values)
            version += 1
        values["version"] = cls.VERSION
        return build(cls, values)

    @classmethod
    def parse(cls: type[R], data: object) -> R | None:
        """The record, or None when `data` is missing or not one."""
        try:
            return cls.from_dict(data) if data is not None else None
        except BadRecord:
            return None

    @classmethod
    def load(cls: type[R], path: Path) -> R | None:
        """The record in `path`; None when it is missing, corrupt or refused."""
        return cls.parse(read_json(path))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON holds it: tuples as lists, without the fields kept out of the file."""
        data = dataclasses.asdict(typing.cast(Any, self))
        for f in dataclasses.fields(typing.cast(Any, self)):
            if not f.metadata.get("stored", True):
                del data[f.name]
        return typing.cast(dict[str, Any], _as_json(data))

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())


def build(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of the dataclass `cls` from `data`, field by field (see the module's rules); for a
    part of a record, or an item of a list in one, that has no version of its own."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, cls)):
        if not f.metadata.get("stored", True):
            continue  # never read from a file (e.g. a secret the program makes itself)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required:
                raise BadRecord(f"{cls.__name__}: the field {f.name!r} is missing")
            continue
        try:
            values[f.name] = _convert(hints[f.name], data[f.name])
        except BadRecord as e:
            if required:
                raise BadRecord(f"{cls.__name__}: the field {f.name!r} {e}") from None
    return cls(**values)


# The JSON scalars a field may be annotated with, and how a value is one (a bool is not an int).
_SCALARS: dict[Any, Callable[[object], bool]] = {
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    type(None): lambda v: v is None,
    Any: lambda v: True,
}


def _convert(tp: Any, value: object) -> Any:
    """`value`, read from JSON, as the annotated type `tp`; BadRecord if it is not one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):
        for option in args:
            with contextlib.suppress(BadRecord):
                return _convert(option, value)
    elif origin is typing.Literal:
        if value in args:
            return value
    elif tp in _SCALARS:
        if _SCALARS[tp](value):
            return float(value) if tp is float else value  # type: ignore[arg-type]
    elif origin in (list, tuple) and isinstance(value, list):
        items = [_convert(args[0] if args else Any, item) for item in value]
        return tuple(items) if origin is tuple else items
    elif origin is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _convert(args[1] if len(args) == 2 else Any, v) for k, v in value.items()}
    elif dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return build(typing.cast(type, tp), value)
    raise BadRecord(f"is not {_name(tp)}: {value!r:.40}")


def _as_json(value: object) -> object:
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# A field type several records share: how the session reaches Jupyter.
Provider = typing.Literal["ngrok", "ssh"]
