"""The Jinja2 sandbox every expression and template runs in.

Journey authors write conditions (``data.total > 0``) and templates; neither may reach the
file system, the network or Python internals. ``ImmutableSandboxedEnvironment`` refuses
attribute access to dunders and mutation of containers; ``StrictUndefined`` turns a
misspelt name into an error instead of an empty string.
"""

from __future__ import annotations

from typing import Any, Callable

from jinja2 import BaseLoader, StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from postsale.errors import ExpressionError

# Names every expression sees; SPEC.md §3 "Expressions".
EXPRESSION_NAMES = ("customer", "event", "data", "answers", "waited", "journey", "now")


class _Env(ImmutableSandboxedEnvironment):
    # Mail must never be used to render a huge range: keep loops small.
    MAX_RANGE = 10_000


def make_environment(loader: BaseLoader | None = None, *, autoescape: bool = False) -> _Env:
    """A sandboxed environment with strict undefined names."""
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
