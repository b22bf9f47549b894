"""Reading keys from layered mappings, collecting every problem at the key's path."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from exporter.config.model import Problem
from exporter.config.values import MissingFile, describe, kind

__all__ = ["Context", "Problems", "Reader", "as_mapping", "check_keys", "join", "read_list"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Context:
    """What parsing takes from outside the file.

    ``base_dir`` is where relative file paths start; None means the working directory.
    ``offline`` (``check-config --offline``): secrets and files that cannot be read here are
    notes, not errors, as the config is checked away from where it runs.
    """

    ehlo_name: str
    environ: Mapping[str, str] | None
    base_dir: str | None
    offline: bool = False


class Problems:
    """Collects problems in order, once each (a bad default shows up for every relay)."""

    def __init__(self) -> None:
        self._found: dict[Problem, None] = {}

    def error(self, path: str, message: str) -> None:
        self._found.setdefault(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self._found.setdefault(Problem(path, message, "warning"))

    def note(self, path: str, message: str) -> None:
        """Something only the machine the exporter runs on can check (offline checks)."""
        self._found.setdefault(Problem(path, message, "note"))

    def of(self, severity: str) -> tuple[Problem, ...]:
        return tuple(problem for problem in self._found if problem.severity == severity)


def join(prefix: str, key: str) -> str:
    """The path of ``key`` inside the mapping at ``prefix`` ("" is the top level)."""
    return f"{prefix}.{key}" if prefix else key


@dataclass(frozen=True, slots=True)
class Reader:
    """Reads keys from mappings in order of precedence, reporting problems at the key's path."""

    layers: tuple[tuple[Mapping[str, object], str], ...]
    problems: Problems

    @property
    def path(self) -> str:
        return self.layers[0][1]

    def at(self, key: str) -> str:
        return join(self.path, key)

    def find(self, key: str) -> tuple[object, str] | None:
        for mapping, prefix in self.layers:
            if key in mapping:
                return mapping[key], join(prefix, key)
        return None

    def explicit(self, key: str) -> bool:
        """Whether ``key`` is set (not null) in the first, most specific mapping."""
        return self.layers[0][0].get(key) is not None

    def is_set(self, key: str) -> bool:
        found = self.find(key)
        return found is not None and found[0] is not None

    def get(self, key: str, convert: Callable[[object], T], default: T) -> T:
        """Convert the key's value; ``default`` when it is absent, null or invalid."""
        found = self.find(key)
        if found is None or found[0] is None:
            return default
        value, path = found
        try:
            return convert(value)
        except ValueError as exc:
            self.problems.error(path, str(exc))
            return default

    def get_file(self, key: str, convert: Callable[[object], str], default: str | None,
                 *, offline: bool) -> str | None:
        """As get, for a path ``convert`` checks exists; offline a file missing here is a
        note, and its path is kept."""
        found = self.find(key)
        if not offline or found is None or found[0] is None:
            return self.get(key, convert, default)
        value, path = found
        try:
            return convert(value)
        except MissingFile as exc:
            self.problems.note(path, exc.note)
            return exc.path
        except ValueError as exc:
            self.problems.error(path, str(exc))
            return default


def as_mapping(value: object, path: str, problems: Problems, what: str) -> dict[str, object]:
    """The value as a mapping with string keys, or an empty one after reporting the problem."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of {what}, got {kind(value)}")
        return {}
    return {str(key): item for key, item in value.items()}


def check_keys(
    mapping: Mapping[str, object],
    path: str,
    valid: tuple[str, ...],
    problems: Problems,
    special: Mapping[str, str] | None = None,
) -> None:
    """Report every unknown key, suggesting the closest valid one."""
    for key in mapping:
        if key in valid:
            continue
        where = join(path, key or '""')  # an empty key still gets a visible path
        if special and key in special:
            problems.error(where, special[key])
            continue
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean {close[0]}?" if close else f"valid keys are {', '.join(valid)}"
        problems.error(where, f"unknown key; {hint}")


def read_list(value: object, path: str, problems: Problems, convert: Callable[[object], str],
              what: str) -> tuple[str, ...]:
    """A list of distinct converted items (empty when absent); each bad item is reported at
    its index and left out."""
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.error(path, f"expected a list of {what}, got {describe(value)}")
        return ()
    out: list[str] = []
    for index, item in enumerate(value):
        try:
            name = convert(item)
        except ValueError as exc:
            problems.error(f"{path}[{index}]", str(exc))
            continue
        if name in out:
            problems.error(f"{path}[{index}]", f"{name} is listed twice; list it once")
            continue
        out.append(name)
    return tuple(out)
