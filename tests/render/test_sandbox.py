"""Templates cannot reach Python internals, the file system or the network (SPEC §9.6)."""

from __future__ import annotations

import pytest

from postsale.errors import RenderError

from .conftest import page, request

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ range.__self__ }}",
    "{{ (data.items() | list)[0].__class__ }}",
    "{{ customer.__class__.__base__.__subclasses__() }}",
    "{{ data | attr('__class__') }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{{ data.update({'x': 1}) }}",
    "{{ data['items'].append(1) }}",
    "{% include '/etc/passwd' %}",
    "{% include '../../../../etc/passwd' %}",
    "{% import '../conftest.py' as x %}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_escape_attempts_fail_with_render_error(make_renderer, payload):
    renderer = make_renderer({"evil.html.j2": page("Hi", f"<p>{payload}</p>")})
    with pytest.raises(RenderError):
        renderer(request("evil"))


@pytest.mark.parametrize("payload", ["{{ ''.__class__ }}", "{{ self._TemplateReference__context }}"])
def test_escape_attempts_in_the_subject_fail_too(make_renderer, payload):
    renderer = make_renderer({"evil.html.j2": page(f"Hi {payload}", "<p>x</p>")})
    with pytest.raises(RenderError, match="evil.html.j2"):
        renderer(request("evil"))


def test_security_error_message_is_readable(make_renderer):
    renderer = make_renderer({"evil.html.j2": page("Hi", "<p>ok</p>\n<p>{{ ''.__class__.__mro__ }}</p>")})
    with pytest.raises(RenderError, match=r"evil\.html\.j2:5: .*(unsafe|not allowed)"):
        renderer(request("evil"))


# ---------------------------------------------------------------- the fast path for dicts

def test_dict_keys_read_as_attributes_but_dict_methods_still_win(make_renderer):
    # The sandbox prefers an attribute to a key: ``data.items`` is the method, not the list.
    body = ("<p>{{ data.order_id }}|{{ data['items'] | length }}|{{ data.items is callable }}|"
            "{{ data.get('order_id') }}|{{ data.keys is callable }}|{{ data._private }}</p>")
    renderer = make_renderer({"d.html.j2": page("Hi", body)})
    email = renderer(request("d", data={"order_id": "1001", "items": [1], "keys": "k", "_private": "p"}))
    assert "1001|1|True|1001|True|p" in email.html


@pytest.mark.parametrize("expr", ["data.big", "data['big']", "data.nested.big", "data.nested['big']",
                                  "data.many", "data['many']"])
def test_oversized_values_in_the_scope_are_refused_when_read(make_renderer, expr):
    from postsale.sandbox import MAX_SIZE
    big = "x" * (MAX_SIZE + 1)
    renderer = make_renderer({"big.html.j2": page("Hi", f"<p>{{{{ {expr} | length }}}}</p>")})
    with pytest.raises(RenderError, match=f"over {MAX_SIZE}"):
        renderer(request("big", data={"big": big, "nested": {"big": big}, "many": [0] * (MAX_SIZE + 1)}))


def test_the_resource_guards_leave_ordinary_templates_alone(make_renderer):
    # Loops (with loop.length), '%' and str.format widths, joins, '~', filter and set blocks
    # and macros all go through the guards of postsale.sandbox; ordinary uses must not notice.
    body = ("<p>{% for k, v in data.sizes|dictsort %}{{ loop.index }}/{{ loop.length }} {{ k }}={{ v }};"
            "{% endfor %}|{{ '%5.2f' % data.total }}|{{ '{:>6}'.format(data.order_id) }}|"
            "{{ data.tags|join(', ') }}|{{ ', '.join(data.tags) }}|{{ data.order_id ~ '-' ~ 7 }}|"
            "{% filter upper %}{% for t in data.tags %}{{ t }}{% endfor %}{% endfilter %}|"
            "{% set block %}{{ data.tags|length }} tags{% endset %}{{ block }}|"
            "{% macro twice(x) %}{{ x }}{{ x }}{% endmacro %}{{ twice('ab') }}|{{ '%s' | format('f') }}</p>")
    renderer = make_renderer({"ok.html.j2": page("Hi", body)})
    email = renderer(request("ok", data={"sizes": {"a": 1, "b": 2}, "total": 3.14159, "order_id": "1001",
                                         "tags": ["mug", "tray"]}))
    assert ("1/2 a=1;2/2 b=2;| 3.14|  1001|mug, tray|mug, tray|1001-7|MUGTRAY|2 tags|abab|f"
            in email.html), email.html


@pytest.mark.parametrize("body, reason", [
    ("{% for a in data.long %}{% for b in data.long %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{{ '%20000s' % 'x' }}", "widths above"),
    ("{{ '{:20000}'.format(1) }}", "widths above"),
    ("{% filter upper %}{% for i in range(1000) %}{{ data.chunk }}{% endfor %}{% endfilter %}", "writing over"),
])
def test_the_resource_guards_refuse_what_would_grow_without_bound(make_renderer, body, reason):
    renderer = make_renderer({"bad.html.j2": page("Hi", f"<p>{body}</p>")})
    with pytest.raises(RenderError, match=reason):
        renderer(request("bad", data={"long": "x" * 1000, "chunk": "y" * 10_000}))
