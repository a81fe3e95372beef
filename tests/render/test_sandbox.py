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
