"""The Jinja2 sandbox every expression and template runs in.

Journey authors write conditions (``data.total > 0``) and templates; neither may reach the
file system, the network or Python internals. ``ImmutableSandboxedEnvironment`` refuses
attribute access to dunders and mutation of containers; ``StrictUndefined`` turns a
misspelt name into an error instead of an empty string.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Callable

from jinja2 import BaseLoader, StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from postsale.errors import ExpressionError

# Names every expression sees; SPEC.md §3 "Expressions".
EXPRESSION_NAMES = ("customer", "event", "data", "answers", "waited", "journey", "now")


# Resource limits (SPEC §9.6: a template cannot loop forever or allocate without bound).
# Jinja's sandbox blocks internals but not ``'x' * 10**9``, ``10**10**10`` or nested
# ``range`` loops; these caps do, raising SecurityError (a clean RenderError/ExpressionError).
MAX_RANGE = 10_000                 # items of one range()
MAX_ITERATIONS = 200_000           # range() items across nested loops (one outermost loop)
MAX_SIZE = 1_000_000               # characters/items of one value built by * + or read back
MAX_POWER_BITS = 4_096             # bits of an integer built by **
MAX_OUTPUT = 2_000_000             # characters of one rendered template

_loops: ContextVar[list[int] | None] = ContextVar("postsale_sandbox_loops", default=None)


def _too_big(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_SIZE


def bounded_range(*args: int) -> Iterator[int]:
    """``range`` for templates: at most MAX_RANGE items, MAX_ITERATIONS across nested loops."""
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range of {len(rng)} items: the sandbox allows {MAX_RANGE}")
    return _counted(rng)


def _counted(rng: range) -> Iterator[int]:
    budget = _loops.get()
    token = None
    if budget is None:                     # the outermost loop: a fresh budget for its nest
        budget = [MAX_ITERATIONS]
        token = _loops.set(budget)
    try:
        for item in rng:
            budget[0] -= 1
            if budget[0] < 0:
                raise SecurityError(f"more than {MAX_ITERATIONS} loop iterations in one render")
            yield item
    finally:
        if token is not None:
            try:
                _loops.reset(token)
            except ValueError:             # closed from another context (garbage collection)
                _loops.set(None)


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's ``lipsum`` with at most 100 paragraphs of at most 1,000 words."""
    if not all(isinstance(v, int) for v in (n, min, max)) or n > 100 or max > 1_000 or min > max:
        raise SecurityError("lipsum() allows at most 100 paragraphs of at most 1000 words")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def bounded_concat(parts: Iterable[str]) -> str:
    """``"".join`` for a template's output, refusing more than MAX_OUTPUT characters."""
    out: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT:
            raise SecurityError(f"rendered output over {MAX_OUTPUT} characters")
        out.append(part)
    return "".join(out)


def _bounded_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)                   # keeps jinja_pass_arg (pass_context & co)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_SIZE:
                raise SecurityError(f"filter {fn.__name__}: argument {arg} is too large")
        result = fn(*args, **kwargs)
        if _too_big(result):
            raise SecurityError(f"filter {fn.__name__}: a value of over {MAX_SIZE} items")
        return result
    return guarded


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum
        # Filters are called directly, not through ``call``: ``'x'|center(10**9)``.
        self.filters = {name: _bounded_filter(f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if max(left.bit_length(), 1) * right > MAX_POWER_BITS:
                raise SecurityError(f"{left} ** {right} is too large for a template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int)
                        and len(seq) * n > MAX_SIZE):
                    raise SecurityError(f"repeating a value to over {MAX_SIZE} items is not allowed")
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, type(left)):
            if len(left) + len(right) > MAX_SIZE:
                raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self._checked(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self._checked(super().getitem(obj, argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if any(_too_big(a) for a in args) or any(_too_big(v) for v in kwargs.values()):
            raise SecurityError(f"an argument of over {MAX_SIZE} items is not allowed")
        return __self._checked(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def _checked(value: Any) -> Any:
        if _too_big(value):
            raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
        return value


def make_environment(loader: BaseLoader | None = None, *, autoescape: bool = False) -> _Env:
    """A sandboxed environment with strict undefined names and the resource limits above."""
    return _Env(loader=loader, undefined=StrictUndefined, autoescape=autoescape,
                trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


_EXPRESSIONS = make_environment()
_cache: dict[str, Callable[..., Any]] = {}


def compile_expression(source: str) -> Callable[..., Any]:
    """Compile an ``if`` expression; raise ExpressionError with Jinja's message if it can't."""
    fn = _cache.get(source)
    if fn is None:
        try:
            fn = _EXPRESSIONS.compile_expression(source, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"expression {source!r} does not compile: {exc.message}") from exc
        _cache[source] = fn
    return fn


def evaluate(source: str, scope: dict[str, Any]) -> Any:
    """Evaluate an expression in the sandbox; any failure becomes ExpressionError."""
    fn = compile_expression(source)
    try:
        value = fn(**scope)
    except (UndefinedError, SecurityError, TypeError, ValueError, AttributeError,
            KeyError, IndexError, ZeroDivisionError, OverflowError) as exc:
        raise ExpressionError(f"expression {source!r} failed: {exc}") from exc
    if isinstance(value, StrictUndefined):
        raise ExpressionError(f"expression {source!r} is undefined")
    return value


def truthy(source: str, scope: dict[str, Any]) -> bool:
    """Evaluate a condition to a plain bool (an undefined result is an error, not False)."""
    value = evaluate(source, scope)
    try:
        return bool(value)
    except Exception as exc:  # StrictUndefined raises on bool()
        raise ExpressionError(f"expression {source!r} failed: {exc}") from exc


class Answers(dict):
    """Survey answers by survey id; an unanswered survey reads as an empty mapping.

    So that ``answers.csat.score is defined`` is simply false before the customer answers,
    rather than an error on ``answers.csat``.
    """

    def __missing__(self, key: str) -> dict:
        return {}
