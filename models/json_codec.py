"""How JSON columns are written and read: orjson, with the standard library where they differ.

Dispatch decodes a run context and a customer's attributes for every due run and encodes the
contexts and outbox headers it changes; ``json`` costs three to four times what ``orjson`` does
there. The values that come back are the ones ``json`` gave, whatever was stored:

* writing, orjson refuses what ``json`` takes (ints beyond 64 bits, non-string keys, lone
  surrogates, float subclasses): those values are written by ``json.dumps``, as before. It writes
  NaN and ±Infinity as ``null``; a value whose text holds a ``null`` is checked for them, and
  one that has them is written by ``json.dumps`` (``NaN``, read back as NaN). Dates, times and
  dataclasses are handed to ``json`` too, which refuses them as it always did;
* reading, orjson refuses ``NaN``/``Infinity``, ``1e400`` and lone surrogate escapes, and reads
  an integer beyond 64 bits as a float: text it refuses, and text with a run of 19 or more
  digits (where such an integer could be), is read by ``json.loads``.

The text differs from what ``json.dumps`` wrote: compact (no space after ``,`` and ``:``) and
UTF-8 rather than ``\\u`` escapes. Parsed, it is equal. orjson also writes UUIDs and enums
that ``json`` refused: values that failed to store before may store now, never the reverse.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# 19 digits: the shortest integer that may not fit in 64 bits (orjson reads it as a float).
# Found by turning every digit into "0" and looking for 19 of them: a C loop and a substring
# search, a tenth of what a ``[0-9]{19}`` regular expression costs on a run context.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is left to json")


def dumps(value: Any) -> str:
    """``json.dumps(value)``'s value, written compactly by orjson when that gives the same."""
    try:
        data = orjson.dumps(value, default=_refuse, option=_OPTIONS)
    except TypeError:                      # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)
    if b"null" in data and _has_non_finite(value):
        return json.dumps(value)
    return data.decode("utf-8")


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """``json.loads(text)``, by orjson where it reads the same."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if _LONG_DIGITS not in data.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _has_non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity sits anywhere in ``value`` (orjson would write ``null``)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            extend(item.values())
        elif isinstance(item, (list, tuple)):
            extend(item)
    return False
