"""Read YAML safely, remembering where every value came from.

Journey and policy files are written by people, so every problem must point at a line.
PyYAML's composer knows where each node starts but its constructor forgets it; ``LineLoader``
keeps it on the containers it builds: a mapping loads as ``LineDict`` (``.line``, plus
``.key_lines`` for each key) and a sequence as ``LineList`` (``.line``, plus ``.item_lines``).
Scalars stay plain Python values: their line is their key's or their item's.

``LineLoader`` is a ``yaml.SafeLoader`` (no Python tags) with cheap guards against hostile
files: at most ``MAX_ALIASES`` aliases per document (a "billion laughs" needs many), no alias
inside its own anchor (a cycle would send any tree walk into an endless loop), at most
``MAX_DEPTH`` levels of nesting (PyYAML recurses per level) and files of at most ``MAX_BYTES``.

One deliberate difference from YAML 1.1: ``10:00`` is a string, not the base-60 integer 600,
so that ``at: 10:00`` means what its author meant, quoted or not.
And a key written twice in one mapping is reported (YAML would silently keep the last).

``Reader`` is the other half: typed accessors over a loaded mapping that record a ``Problem``
at the right line instead of raising, so one pass reports every mistake in a file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import time, timedelta
from typing import Any

import yaml

from postsale.durations import parse_duration
from postsale.spec.problems import Problem

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_DEPTH = 64

_INT = "tag:yaml.org,2002:int"


class LineDict(dict):
    """A mapping that remembers its line and the line of each of its keys (1-based)."""
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        """The line of ``key``, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence that remembers its line and the line of each item (1-based)."""
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.item_lines: list[int] = []


class _Refused(yaml.MarkedYAMLError):
    """A document that is valid YAML but too dangerous to build."""


class LineLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` building ``LineDict``/``LineList`` and refusing YAML bombs."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._open_anchors: set[str] = set()
        self.duplicate_keys: list[tuple[Any, int]] = []   # (key, line of its second occurrence)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(problem=f"more than {MAX_ALIASES} aliases (*name): refused as a "
                               "possible YAML bomb", problem_mark=event.start_mark)
            if event.anchor in self._open_anchors:
                raise _Refused(problem=f"alias *{event.anchor} refers to its own anchor",
                               problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep",
                           problem_mark=event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> Any:
    data = LineDict()
    data.line = node.start_mark.line + 1
    yield data      # yielded first, filled after: PyYAML's protocol for shared and nested nodes
    own = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)   # resolves `<<`: merged keys may be overridden, own keys not
    seen = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark) from None
        line = key_node.start_mark.line + 1
        if id(key_node) in own:
            if key in seen:
                loader.duplicate_keys.append((key, line))
            seen.add(key)
        data[key] = loader.construct_object(value_node)
        data.key_lines[key] = line


def _construct_sequence(loader: LineLoader, node: yaml.SequenceNode) -> Any:
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_object(item) for item in node.value)


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
LineLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
LineLoader.add_implicit_resolver(_INT, re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X), list("-+0123456789"))


def load_yaml(text: str, file: str) -> tuple[Any | None, list[Problem]]:
    """Load one YAML document; on any error return ``None`` and the problems, never raise."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None, [Problem(file, 0, f"file is larger than {MAX_BYTES // 1024} KiB",
                              hint="a journey or policy file is a few hundred lines")]
    try:
        loader = LineLoader(text)          # its Reader refuses non-printable characters at once
    except yaml.YAMLError as exc:
        return None, [Problem(file, 1, f"YAML syntax error: {exc}")]
    try:
        data = loader.get_single_data()
    except _Refused as exc:
        return None, [Problem(file, exc.problem_mark.line + 1, f"YAML refused: {exc.problem}")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = "; ".join(x for x in (exc.context, exc.problem) if x)
        return None, [Problem(file, mark.line + 1 if mark else 1, f"YAML syntax error: {detail}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, 1, f"YAML syntax error: {exc}")]
    finally:
        loader.dispose()
    problems = [Problem(file, line, f"duplicate key `{key}`", hint="the last one would win silently")
                for key, line in loader.duplicate_keys]
    return data, problems


def did_you_mean(word: Any, choices: Iterable[str], *, noun: str = "accepted") -> str:
    """A hint naming the closest choice (if any) and listing them all."""
    choices = list(choices)
    close = difflib.get_close_matches(str(word), choices, n=1)
    listing = f"{noun}: {', '.join(choices)}" if choices else ""
    if close:
        return f"did you mean `{close[0]}`? {listing}".strip()
    return listing


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


class Reader:
    """Typed reads over ``LineDict`` values that record problems instead of raising.

    Each accessor returns the value, or ``None`` (or the given default) when the key is
    absent or the value is wrong; in the second case a Problem names the key's line.
    """

    def __init__(self, file: str, problems: list[Problem] | None = None) -> None:
        self.file = file
        self.problems: list[Problem] = problems if problems is not None else []

    def error(self, line: int, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, line, message, "error", hint))

    def warning(self, line: int, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, line, message, "warning", hint))

    @property
    def failed(self) -> bool:
        return any(p.is_error for p in self.problems)

    def mapping(self, value: Any, line: int, label: str) -> LineDict | None:
        if isinstance(value, LineDict):
            return value
        self.error(line, f"`{label}` must be a mapping (key: value lines), not {_kind(value)}")
        return None

    def sequence(self, value: Any, line: int, label: str) -> LineList | None:
        if isinstance(value, LineList):
            return value
        self.error(line, f"`{label}` must be a list (lines starting with `- `), not {_kind(value)}")
        return None

    def check_keys(self, m: LineDict, allowed: Iterable[str], where: str, *,
                   line: int | None = None) -> bool:
        """Report every key of ``m`` outside ``allowed``; True when there was none."""
        allowed = list(allowed)
        clean = True
        for key in m:
            if key not in allowed:
                clean = False
                self.error(m.line_of(key) if line is None else line,
                           f"unknown key `{key}` in {where}", did_you_mean(key, allowed))
        return clean

    def text(self, m: LineDict, key: str, label: str, *, required: bool = False,
             pattern: re.Pattern[str] | None = None, hint: str = "") -> str | None:
        if key not in m:
            if required:
                self.error(m.line, f"missing `{label}`", hint)
            return None
        value = m[key]
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(m.line_of(key), f"`{label}` must be non-empty text, not {_kind(value)}", hint)
            return None
        if pattern is not None and not pattern.match(value):
            self.error(m.line_of(key), f"`{label}` {value!r} is not valid", hint)
            return None
        return value

    def integer(self, m: LineDict, key: str, label: str, default: int | None = None, *,
                minimum: int | None = 1) -> int | None:
        if key not in m:
            return default
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(m.line_of(key), f"`{label}` must be a whole number, not {_kind(value)}")
            return default
        if minimum is not None and value < minimum:
            self.error(m.line_of(key), f"`{label}` must be at least {minimum}, not {value}")
            return default
        return value

    def flag(self, m: LineDict, key: str, label: str, default: bool) -> bool:
        if key not in m:
            return default
        value = m[key]
        if not isinstance(value, bool):
            self.error(m.line_of(key), f"`{label}` must be true or false, not {_kind(value)}")
            return default
        return value

    def duration(self, m: LineDict, key: str, label: str, *,
                 required: bool = False) -> timedelta | None:
        if key not in m or (m[key] is None and not required):
            if required:
                self.error(m.line, f"missing `{label}`", "a duration like 30m, 6h, 2d or 1w")
            return None
        try:
            return parse_duration(m[key])
        except ValueError as exc:
            self.error(m.line_of(key), f"`{label}`: {exc}")
            return None

    def clock(self, m: LineDict, key: str, label: str) -> time | None:
        """An ``HH:MM`` wall-clock time, 00:00 to 23:59."""
        if key not in m:
            return None
        value = m[key]
        match = _CLOCK.match(value.strip()) if isinstance(value, str) else None
        if match and int(match[1]) < 24 and int(match[2]) < 60:
            return time(int(match[1]), int(match[2]))
        self.error(m.line_of(key), f"`{label}` must be a time HH:MM from 00:00 to 23:59, "
                   f"not {value!r}", 'like "10:00"')
        return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
