"""Templates and expressions that try to escape the sandbox, read files, loop for ever or
allocate without bound (issue 9, SPEC §9.6).

Each attack runs in a forked child with a memory ceiling (384 MiB above what it inherited)
and a deadline (``tests/reliability/guarded.py``), so a hole fails its test instead of taking
the runner down. The only acceptable outcome is a clean refusal within both: an
``ExpressionError`` from ``evaluate``, a ``RenderError`` from the renderer that is not a
``MemoryError`` in disguise (the renderer wraps any exception: a wrapped MemoryError means
the allocation was attempted, which is the hole).

Each attack below was a hole once (loops over strings, ``%`` and ``str.format`` widths, ``~``,
``join``/``expandtabs``/``wordwrap``, ``{% filter %}`` buffers, errors raised while compiling an
expression); ``hole()`` marks a newly found one ``xfail(strict=True)`` until it is fixed.

Property tests (hypothesis) then throw generated expressions and templates, built from the
sandbox's names, filters, dunders and operators with small numbers, at the same two entry
points in-process: every outcome is a value or the clean error, never another exception.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


from postsale.errors import ExpressionError, RenderError
from postsale.sandbox import MAX_OUTPUT, MAX_SIZE, evaluate
from tests.reliability.guarded import guarded
from tests.render.conftest import page, request, scope

DEADLINE = float(os.environ.get("POSTSALE_SANDBOX_DEADLINE", "5"))
LONG = os.environ.get("POSTSALE_LONG") == "1"
PROPERTY = settings(max_examples=3000 if LONG else 250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


def hole(reason: str):
    return pytest.mark.xfail(strict=True, reason=f"sandbox hole (postsale/sandbox.py): {reason}")


EXPRESSION_ATTACKS = [
    "''.__class__.__mro__[1].__subclasses__()", "cycler.__init__.__globals__", "joiner.__init__.__globals__",
    "namespace.__init__.__globals__", "lipsum.__globals__", "range.__self__", "data|attr('__class__')",
    "data.update({'x': 1})", "data['items'].append(1)",
    "'x' * 10**9", "[1] * 10**9", "(2**4000)**4000", "range(10**9)|list", "lipsum(10**6)", "'x'|center(10**9)",
    "('x' * 999999)|replace('x', 'yyyy')", "('x' * 999999).replace('x', 'yyyy')", "('x' * 999999)|tojson",
    "('<' * 999999)|escape", "(range(10000)|list) * 1000",
    "'%999999999s' % 'x'",
    "'%0999999999d' % 1",
    "'%s%s%s%s%s%s%s%s' % (('x' * 999999,) * 8)",
    "'{:999999999}'.format(1)",
    "'{0:{1}}'.format(1, 999999999)",
    " ~ ".join(["('x' * 999999)"] * 12),
    "('x' * 999999)|list|join('x' * 999999)",
    "('x' * 999999).join('x' * 999999)",
    "('\\t' * 999999).expandtabs(999999)",
    "('x' * 999999)|wordwrap(1)",
]


@pytest.mark.parametrize("source", EXPRESSION_ATTACKS)
def test_expression_attacks_are_refused_cleanly_in_bounded_time_and_memory(source):
    outcome = guarded(lambda: evaluate(source, scope()), seconds=DEADLINE)
    if outcome.kind == "returned":      # harmless only if nothing oversized came back
        assert not (isinstance(outcome.value, (str, list, tuple)) and len(outcome.value) > MAX_SIZE), str(outcome)
        pytest.fail(f"expected a refusal, got {outcome}")
    assert (outcome.kind, outcome.error) == ("raised", "ExpressionError"), str(outcome)


TEMPLATE_ATTACKS = [
    "{{ 'x' * 10**9 }}", "{{ [0] * 10**9 }}", "{{ 2 ** 100000000 }}", "{{ lipsum(10**6) }}",
    "{{ 'x'|center(10**9) }}", "{{ 'x'|indent(10**9, true) }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'y' * 999999 }}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('x', 64) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% for i in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{{ self._TemplateReference__context }}", "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{% set l = [] %}{{ l.append(1) }}",
    "{% for a in 'x' * 999999 %}{% for b in 'x' * 999999 %}{% endfor %}{% endfor %}",
    "{% for a in lipsum(100, false, 100, 1000)|list %}{% for b in lipsum(100, false, 100, 1000)|list %}"
                 "{% endfor %}{% endfor %}",
    "{{ '%999999999s' % 'x' }}",
    "{% set a = 'x' * 999999 %}{% set b = a ~ a ~ a ~ a %}{% set c = b ~ b ~ b ~ b %}"
                 "{% set d = c ~ c ~ c ~ c %}{% set e = d ~ d ~ d ~ d %}{{ e|length }}",
    "{% filter upper %}{% for i in range(10000) %}{% for j in range(10) %}{{ 'x' * 10000 }}"
                 "{% endfor %}{% endfor %}{% endfilter %}",
    "{{ ('x' * 999999)|wordwrap(1) }}",
]


@pytest.mark.parametrize("payload", TEMPLATE_ATTACKS)
def test_template_attacks_are_refused_cleanly_in_bounded_time_and_memory(make_renderer, payload):
    renderer = make_renderer({"evil.html.j2": page("Hi", f"<p>{payload}</p>")})
    outcome = guarded(lambda: renderer(request("evil")).html, seconds=DEADLINE)
    assert outcome.kind == "raised" and outcome.error == "TemplateRenderError", str(outcome)
    assert "MemoryError" not in outcome.message, f"refused only after trying to allocate: {outcome}"


FILE_READS = [
    "{% include '/etc/passwd' %}", "{% include '../../../../../../etc/passwd' %}",
    "{% include ['/etc/passwd', '_layout.html.j2'] %}", "{% import '/etc/passwd' as p %}",
    "{% from '../../../../../../etc/passwd' import x %}", "{% include 'templates/../../../../etc/passwd' %}",
    "{% include '\\x00/etc/passwd' %}", "{{ cycler.__init__.__globals__['__builtins__']['open']('/etc/passwd').read() }}",
    "{{ self.__dict__ }}", "{{ lipsum.__globals__['os'].environ }}", "{{ namespace.__init__.__globals__.sys.modules }}",
]


@pytest.mark.parametrize("payload", FILE_READS)
def test_templates_cannot_read_files_or_the_environment(make_renderer, tmp_path, payload):
    (tmp_path / "secret.txt").write_text("root:x:0:0:SECRET")
    renderer = make_renderer({"evil.html.j2": page("Hi", f"<p>{payload}</p>")})
    outcome = guarded(lambda: renderer(request("evil")).html, seconds=DEADLINE)
    assert outcome.kind in ("raised", "returned"), str(outcome)
    if outcome.kind == "raised":
        assert outcome.error == "TemplateRenderError", str(outcome)
    text = outcome.value if outcome.kind == "returned" else outcome.message
    assert "root:x:0:0" not in text and "SECRET" not in text and "PATH" not in text, str(outcome)[:500]


# ------------------------------------------------------------ generated expressions and templates

NAMES = ["customer", "customer.name", "customer.attributes", "data", "data.total", "data['items']", "event",
         "event.type", "answers", "answers.csat", "waited", "journey", "journey.id", "now", "range", "lipsum",
         "cycler", "joiner", "namespace", "dict", "loop", "self", "caller", "varargs", "kwargs", "undefined_name"]
ATTRIBUTES = ["__class__", "__mro__", "__subclasses__", "__globals__", "__init__", "__dict__", "__builtins__",
              "__code__", "func_globals", "gi_frame", "f_back", "mro", "format", "format_map", "append",
              "update", "pop", "clear", "items", "keys", "upper", "split", "join", "encode", "__len__", "_Undefined"]
FILTERS = ["length", "list", "string", "upper", "title", "first", "last", "sort", "unique", "reverse", "join",
           "sum", "min", "max", "abs", "int", "float", "round", "tojson", "escape", "safe", "e", "trim",
           "wordcount", "dictsort", "items", "batch(3)", "slice(2)", "center(20)", "indent(4)", "truncate(10)",
           "replace('a', 'bb')", "default('x')", "attr('__class__')", "map('upper')", "map(attribute='x')",
           "select('odd')", "reject", "groupby('x')", "format('%s')", "random", "pprint", "urlize", "xmlattr",
           "filesizeformat", "striptags", "wordwrap(5)"]
literals = (st.integers(-20, 20).map(str) | st.integers(0, 9999).map(str)
            | st.sampled_from(["''", "'abc'", "'%s'", "'{}'", "'{0.__class__}'", "'%(a)s'", "[]", "[1, 2]",
                               "{}", "{'a': 1}", "none", "true", "(1, 2)", "1.5", "-0.0", "'\\x00'"]))


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "and", "or", "==", "<", "in", "not in"])
    return st.one_of(
        st.tuples(inner, ops, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(ATTRIBUTES)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]}|{t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, st.lists(inner, max_size=2)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        inner.map(lambda e: f"(not {e})"), inner.map(lambda e: f"({e} is defined)"),
    )


expressions = st.recursive(st.sampled_from(NAMES) | literals, _extend, max_leaves=8)

# Every failure of a generated expression must be an ExpressionError; nothing else is tolerated.
KNOWN_LEAKS: tuple[type[BaseException], ...] = ()


@PROPERTY
@given(expressions)
def test_generated_expressions_give_a_value_or_an_expression_error(source):
    try:
        evaluate(source, scope())
    except ExpressionError:
        pass
    except KNOWN_LEAKS as exc:
        assert type(exc) in KNOWN_LEAKS, f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("source", [
    "data.order_id|int|reverse",
    "cycler()",
    "customer if 0.__class__ else data",
    "customer if 0.__mro__ else data",
    "data.order_id|int|list", "range(1, 2, 0)", "customer.__class__", "data.missing|reverse",
])
def test_a_failing_expression_is_always_an_expression_error(source):
    with pytest.raises(ExpressionError):
        evaluate(source, scope())


def _statement(expr: str, kind: int, body: str) -> str:
    return [f"{{{{ {expr} }}}}", f"{{% if {expr} %}}{body}{{% endif %}}",
            f"{{% for x in {expr} %}}{{{{ x }}}}{body}{{% endfor %}}", f"{{% set v = {expr} %}}{{{{ v }}}}",
            f"{{% with w = {expr} %}}{body}{{{{ w }}}}{{% endwith %}}"][kind]


template_bodies = st.recursive(
    st.tuples(expressions, st.integers(0, 4), st.just("")).map(lambda t: _statement(*t)),
    lambda inner: st.tuples(expressions, st.integers(1, 4), inner).map(lambda t: _statement(*t))
    | st.lists(inner, min_size=2, max_size=3).map("".join),
    max_leaves=4)


@pytest.fixture(scope="module")
def generated_renderer(tmp_path_factory):
    from postsale.links import Links
    from postsale.render.templates import TemplateRenderer
    from tests.render.conftest import LAYOUT, POLICY, SECRET
    folder = tmp_path_factory.mktemp("generated")
    (folder / "_layout.html.j2").write_text(LAYOUT)
    return folder, TemplateRenderer, Links(SECRET, POLICY.public_url), POLICY


@PROPERTY
@given(template_bodies)
def test_generated_templates_render_or_fail_with_a_render_error(generated_renderer, body):
    folder, renderer_class, links, policy = generated_renderer
    (folder / "gen.html.j2").write_text(page("Hi {{ customer.name }}", f"<p>{body}</p>"))
    renderer = renderer_class(folder, policy, links)     # fresh: no compiled template is cached
    try:
        email = renderer(request("gen"))
    except RenderError:
        return
    assert len(email.html) <= 2 * MAX_OUTPUT
