"""The Jinja2 sandbox every expression and template runs in.

Journey authors write conditions (``data.total > 0``) and templates; neither may reach the
file system, the network or Python internals. ``ImmutableSandboxedEnvironment`` refuses
attribute access to dunders and mutation of containers; ``StrictUndefined`` turns a
misspelt name into an error instead of an empty string.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Callable

from jinja2 import BaseLoader, StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2.visitor import NodeTransformer
from jinja2.exceptions import SecurityError, TemplateError
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
MAX_BUFFERED = 4 * MAX_OUTPUT      # characters written by one template's {{ }} in all, buffers included
MAX_WIDTH = 10_000                 # a width or precision in '%' and str.format specs
MAX_WRAP = 100_000                 # characters ``wordwrap`` takes (its cost grows with text x width)

_loops: ContextVar[list[int] | None] = ContextVar("postsale_sandbox_loops", default=None)


_SIZED = (str, bytes, list, tuple)


def _too_big(value: Any) -> bool:
    return isinstance(value, _SIZED) and len(value) > MAX_SIZE


def bounded_range(*args: int) -> Iterator[int]:
    """``range`` for templates: at most MAX_RANGE items, MAX_ITERATIONS across nested loops."""
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range of {len(rng)} items: the sandbox allows {MAX_RANGE}")
    return _Counted(_counted(rng))


class _Counted:
    """An iterator already spending the loop budget (``range()``): ``loop_iter`` lets it be."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __next__(self) -> Any:
        return next(self._items)


def loop_iter(iterable: Any) -> Any:
    """What every ``{% for %}`` iterates: the items of ``iterable``, spending the loop budget.

    Jinja's sandbox bounds no loop; without this, two nested loops over a long string run for
    hours. Sized values keep ``loop.length`` cheap: they are counted as they are walked.
    """
    if isinstance(iterable, _Counted) or isinstance(iterable, StrictUndefined):
        return iterable
    return _Counted(_counted(iterable))


def _counted(rng: Iterable[Any]) -> Iterator[Any]:
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


def _joined_size(separator: Any, items: list[Any]) -> int:
    pieces = sum(len(x) for x in items if isinstance(x, str))
    return pieces + len(separator) * max(len(items) - 1, 0) if isinstance(separator, str) else pieces


def _format_fields(template: str) -> int:
    """Replacement fields of a ``str.format`` template; refuses wide or computed specs."""
    fields = 0
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is None:
            continue
        fields += 1
        if spec and ("{" in spec or any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", spec))):
            raise SecurityError(f"format spec {spec!r}: widths above {MAX_WIDTH} or computed widths are not allowed")
    return fields


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _percent_fields(template: str) -> int:
    """Conversions of a ``%`` template; refuses wide or ``*`` widths and precisions."""
    fields = 0
    for width, precision, kind in _PERCENT_SPEC.findall(template):
        if kind == "%":
            continue
        fields += 1
        for n in (width, precision):
            if n == "*" or (n and int(n) > MAX_WIDTH):
                raise SecurityError(f"'%' format: widths above {MAX_WIDTH} or '*' widths are not allowed")
    return fields


def _largest(values: Any) -> int:
    items = values.values() if isinstance(values, dict) else values if isinstance(values, (list, tuple)) else [values]
    return max((len(v) for v in items if isinstance(v, _SIZED)), default=0)


def _check_percent(template: str, values: Any) -> None:
    if len(template) + _percent_fields(template) * _largest(values) > MAX_SIZE:
        raise SecurityError(f"'%' formatting to over {MAX_SIZE} characters is not allowed")


def _precheck_filter(name: str, args: tuple, kwargs: dict) -> None:
    """What a filter would build, refused before it is built (the result check comes too late)."""
    if name == "join":
        value = next((a for a in args if not hasattr(a, "autoescape")), None)   # skip eval_ctx
        separator = kwargs.get("d", args[args.index(value) + 1] if value is not None and len(args) > args.index(value) + 1 else "")
        if isinstance(value, (list, tuple, str)) and _joined_size(separator, list(value)) > MAX_SIZE:
            raise SecurityError(f"join to over {MAX_SIZE} characters is not allowed")
    elif name == "wordwrap":
        text = next((a for a in args if isinstance(a, str)), "")
        if len(text) > MAX_WRAP:
            raise SecurityError(f"wordwrap of over {MAX_WRAP} characters is not allowed")
    elif name == "format" and args and isinstance(args[0], str):
        _check_percent(args[0], list(args[1:]) or kwargs)


def _bounded_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = fn.__name__.removeprefix("do_")

    @functools.wraps(fn)                   # keeps jinja_pass_arg (pass_context & co)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_SIZE:
                raise SecurityError(f"filter {fn.__name__}: argument {arg} is too large")
        if name in _PRECHECKED:
            _precheck_filter(name, args, kwargs)
        result = fn(*args, **kwargs)
        if _too_big(result):
            raise SecurityError(f"filter {fn.__name__}: a value of over {MAX_SIZE} items")
        return result
    return guarded


_PRECHECKED = frozenset({"join", "wordwrap", "format"})


def _precheck_call(obj: Any, args: tuple, kwargs: dict) -> None:
    """Bound ``str`` methods whose result size the arguments decide: refused before they run."""
    obj = getattr(obj, "__wrapped__", obj)          # the sandbox wraps str.format at lookup
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(obj, "__name__", "")
    if name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple, str)) and _joined_size(owner, list(items)) > MAX_SIZE:
            raise SecurityError(f"join to over {MAX_SIZE} characters is not allowed")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and len(owner) + owner.count("\t") * max(size, 0) > MAX_SIZE:
            raise SecurityError(f"expandtabs to over {MAX_SIZE} characters is not allowed")
    elif name in ("format", "format_map"):
        values = [*args, *kwargs.values()]
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        if len(owner) + _format_fields(owner) * _largest(values) > MAX_SIZE:
            raise SecurityError(f"format to over {MAX_SIZE} characters is not allowed")


class _Guards(NodeTransformer):
    """Rewrites a parsed template so that what Jinja's sandbox does not bound is bounded.

    Every ``{% for %}`` iterates through ``postsale_loop`` (the loop budget), every ``~`` result
    passes ``postsale_sized`` and every ``{{ }}`` value ``postsale_written``, which counts what
    one template writes, the buffered bodies of ``{% filter %}``, ``{% set %}`` and macros
    included. Filters, not calls: a filter is called directly, a call pays the sandbox's checks.
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter("postsale_loop", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter("postsale_sized", node)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [child if isinstance(child, nodes.TemplateData) else _filter("postsale_written", child)
                      for child in node.nodes]
        return node


def _filter(name: str, node: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno or 1)


def sized(value: Any) -> Any:
    if isinstance(value, _SIZED) and len(value) > MAX_SIZE:
        raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
    return value


@pass_context
def written(context: Any, value: Any) -> Any:
    """A ``{{ }}`` value on its way out: counted against MAX_BUFFERED for its template."""
    if isinstance(value, str):
        size = len(value)
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        size = len(value) + sum(len(v) for v in value if isinstance(v, _SIZED))   # what str() will build
    else:
        return value
    total = context.__dict__.get("_postsale_written", 0) + size
    if total > MAX_BUFFERED:
        raise SecurityError(f"a template writing over {MAX_BUFFERED} characters is not allowed")
    context._postsale_written = total
    return value


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        return super()._generate(_Guards().visit(source), name, filename, defer_init)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum
        # Filters are called directly, not through ``call``: ``'x'|center(10**9)``.
        self.filters = {name: _bounded_filter(f) for name, f in self.filters.items()}
        self.filters.update(postsale_loop=loop_iter, postsale_sized=sized, postsale_written=written)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if max(left.bit_length(), 1) * right > MAX_POWER_BITS:
                raise SecurityError(f"{left} ** {right} is too large for a template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int)
                        and len(seq) * n > MAX_SIZE):
                    raise SecurityError(f"repeating a value to over {MAX_SIZE} items is not allowed")
        if operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, type(left)):
            if len(left) + len(right) > MAX_SIZE:
                raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
        return super().call_binop(context, operator, left, right)

    # getattr and getitem run for every ``a.b`` and ``a['b']`` of every render. The scope is
    # dicts all the way down: a dict key that is not also a dict attribute (``items``, ``get``:
    # those the sandbox prefers, so ``data.items`` stays the method) is read directly, skipping
    # the sandbox's failed ``getattr`` and its exception. Only values with a size are measured.
    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj and attribute not in _DICT_ATTRIBUTES:
            value = obj[attribute]
        else:
            value = _SANDBOX_GETATTR(self, obj, attribute)
        if isinstance(value, _SIZED) and len(value) > MAX_SIZE:
            raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict and type(argument) is str and argument in obj:
            value = obj[argument]
        else:
            value = _SANDBOX_GETITEM(self, obj, argument)
        if isinstance(value, _SIZED) and len(value) > MAX_SIZE:
            raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
        return value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if any(_too_big(a) for a in args) or any(_too_big(v) for v in kwargs.values()):
            raise SecurityError(f"an argument of over {MAX_SIZE} items is not allowed")
        _precheck_call(__obj, args, kwargs)
        return __self._checked(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def _checked(value: Any) -> Any:
        if _too_big(value):
            raise SecurityError(f"a value of over {MAX_SIZE} items is not allowed")
        return value


_DICT_ATTRIBUTES = frozenset(dir(dict))
_SANDBOX_GETATTR = ImmutableSandboxedEnvironment.getattr
_SANDBOX_GETITEM = ImmutableSandboxedEnvironment.getitem


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
        except (TemplateError, ArithmeticError, TypeError, ValueError, AttributeError) as exc:
            # Jinja folds constants while compiling: ``0.__class__`` is refused here, not later.
            raise ExpressionError(f"expression {source!r} does not compile: {exc}") from exc
        _cache[source] = fn
    return fn


def evaluate(source: str, scope: dict[str, Any]) -> Any:
    """Evaluate an expression in the sandbox; any failure becomes ExpressionError."""
    fn = compile_expression(source)
    try:
        value = fn(**scope)
    except MemoryError:
        raise
    except Exception as exc:   # a journey's data is whatever arrived: any failure skips the step
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
