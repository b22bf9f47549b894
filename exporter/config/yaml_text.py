"""YAML text to plain data; syntax errors and keys given twice are reported with their place."""

from __future__ import annotations

from typing import Any, cast

import yaml

from exporter.config.model import ConfigError, Problem
from exporter.config.reader import join
from exporter.config.values import describe

__all__ = ["read_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STANDARD_TAG = "tag:yaml.org,2002:"
# What PyYAML's constructors raise for a scalar their tag cannot read, e.g. !!int abc.
_CONSTRUCT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def read_yaml(text: str, source: str) -> tuple[object, tuple[str, ...]]:
    """The document's data, and the path of every key given twice in one mapping.

    Raise ConfigError naming ``source`` and the line when the text is not valid YAML.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        # The reader checks every character before parsing starts (control characters).
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError([Problem(
            source, f"invalid YAML at line {line}: character #x{exc.character:04x} is not "
            "allowed in YAML; remove it"
        )]) from None
    try:
        return loader.load_document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark else "somewhere"
        what = exc.problem or exc.context or "syntax error"
        fix = exc.fix if isinstance(exc, _BadValueError) else "fix the syntax on that line"
        raise ConfigError([Problem(source, f"invalid YAML at {where}: {what}; {fix}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source, f"invalid YAML: {type(exc).__name__}")]) from None
    finally:
        loader.dispose()


class _BadValueError(yaml.MarkedYAMLError):
    """A scalar that its tag cannot be built from, such as ``!!int abc`` or ``2024-13-01``."""

    def __init__(self, node: yaml.Node, explicit: bool) -> None:
        tag = node.tag.replace(_STANDARD_TAG, "!!")
        super().__init__(
            problem=f"{describe(node.value)} is not a valid {tag}", problem_mark=node.start_mark
        )
        self.fix = "fix the value or remove the tag" if explicit else "quote it to keep it as text"


class _Mark:
    """Where a token or node starts: its line and column, all an error here names. PyYAML's
    own mark (with a snippet of the text) per token and node doubled the memory a 10,000-relay
    config took to load."""

    __slots__ = ("column", "line")
    name = "<config>"
    index = pointer = 0
    buffer = None

    def __init__(self, line: int, column: int) -> None:
        self.line, self.column = line, column

    def get_snippet(self) -> None:
        return None

    def __str__(self) -> str:
        return f'  in "{self.name}", line {self.line + 1}, column {self.column + 1}'


class _Loader(yaml.SafeLoader):
    """A SafeLoader that also finds duplicate keys, which plain YAML loading drops silently.

    A value that its tag cannot be built from is a YAML error with its line, not a crash.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._tagged: set[int] = set()

    def get_mark(self) -> yaml.Mark:
        return cast(yaml.Mark, _Mark(self.line, self.column))

    def compose_scalar_node(self, anchor: dict[Any, yaml.Node]) -> yaml.ScalarNode:
        tag = self.peek_event().tag  # type: ignore[no-untyped-call]
        node = super().compose_scalar_node(anchor)
        if tag is not None and tag != "!":
            self._tagged.add(id(node))
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _CONSTRUCT_ERRORS:
            raise _BadValueError(node, id(node) in self._tagged) from None

    def load_document(self) -> tuple[object, tuple[str, ...]]:
        node = self.get_single_node()
        if node is None:
            return None, ()
        duplicates: list[str] = []
        self._find_duplicates(node, "", duplicates, set())
        return self.construct_document(node), tuple(duplicates)

    def _find_duplicates(
        self, node: yaml.Node, path: str, found: list[str], visited: set[int]
    ) -> None:
        """Append the path of each key that repeats in its mapping, walking the node tree.

        Paths are written as the validator writes them (``relays[0].port``). A node reached
        again through an alias is walked once; keys brought in by a ``<<`` merge may be
        overridden, so only keys written in the mapping itself count.
        """
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._find_duplicates(item, f"{path}[{index}]", found, visited)
            return
        if not isinstance(node, yaml.MappingNode):
            return
        keys: set[object] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for item in merged:
                    self._find_duplicates(item, path, found, visited)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: construction rejects it with its line
            key = self.construct_object(key_node)
            where = join(path, str(key))
            if key in keys:
                found.append(where)
            keys.add(key)
            self._find_duplicates(value_node, where, found, visited)
