"""Fixtures for rendering tests: a policy, signed links and throwaway template folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from postsale.links import Links
from postsale.render.templates import TemplateRenderer
from postsale.render.types import RenderRequest
from postsale.spec.model import Category, Policy, Sender, SurveyDef

REPO = Path(__file__).resolve().parents[2]
SHIPPED_JOURNEYS = REPO / "journeys"
SHIPPED_TEMPLATES = REPO / "templates"
SECRET = "test-secret-0123456789abcdef"

POLICY = Policy(sender=Sender(from_="Acme <hello@acme.example>", reply_to="care@acme.example"),
                postal_address="Acme Srl, Via Roma 1, 50123 Firenze, Italy",
                public_url="https://mail.acme.example")

# A small layout with the same contract as the shipped one.
LAYOUT = """<!DOCTYPE html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{% block subject %}{% endblock %}</title>
<style>p { color: #222222; } .footer { font-size: 12px; }</style></head>
<body><div style="display:none">{% block preheader %}{% endblock %}</div>
{% block body %}{% endblock %}
<div class="footer">{% if category == 'marketing' %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>
<a href="{{ preferences_url }}">Preferences</a>{% endif %}
<p>{{ policy.postal_address }}</p></div>
</body></html>
"""


def page(subject: str, body: str, preheader: str | None = None) -> str:
    pre = "" if preheader is None else f"{{% block preheader %}}{preheader}{{% endblock %}}\n"
    return (f'{{% extends "_layout.html.j2" %}}\n{{% block subject %}}{subject}{{% endblock %}}\n'
            f"{pre}{{% block body %}}\n{body}\n{{% endblock %}}\n")


@pytest.fixture
def links() -> Links:
    return Links(SECRET, POLICY.public_url)


@pytest.fixture
def make_renderer(tmp_path: Path, links: Links) -> Callable[..., TemplateRenderer]:
    """Write template files (name -> text) next to the test layout; return a renderer."""
    def make(files: dict[str, str], *, layout: str | None = LAYOUT, policy: Policy = POLICY) -> TemplateRenderer:
        folder = tmp_path / "templates"
        folder.mkdir(exist_ok=True)
        if layout is not None:
            (folder / "_layout.html.j2").write_text(layout, encoding="utf-8")
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return TemplateRenderer(folder, policy, links)
    return make


def scope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "customer": {"id": "c-42", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Rome",
                     "locale": None, "attributes": {}},
        "event": {"id": "e-1", "type": "order.placed", "occurred_at": "2026-11-20T09:15:00+00:00",
                  "data": {}},
        "data": {"order_id": "1001", "items": [{"name": "Steel kettle", "category": "kitchen"}]},
        "answers": {}, "waited": None, "journey": {"id": "post-purchase"}, "now": None,
    }
    base.update(overrides)
    return base


def request(template: str = "hello", *, category: Category = Category.marketing,
            survey: SurveyDef | None = None, locale: str | None = None, **scope_overrides: Any) -> RenderRequest:
    return RenderRequest(template=template, category=category, scope=scope(**scope_overrides),
                         message_id="msg-1", customer_id="c-42", locale=locale, survey=survey)
