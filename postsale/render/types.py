"""What the engine asks of a renderer, and what it gets back.

The engine is pure: it builds a ``RenderRequest`` and calls whatever ``Renderer`` the edge
injected (the real Jinja2 one in ``postsale.render.templates``, or a fake in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from postsale.spec.model import Category, SurveyDef


@dataclass(frozen=True)
class RenderRequest:
    template: str                          # "thank_you" -> templates/thank_you.html.j2
    category: Category
    scope: dict[str, Any]                  # customer, event, data, answers, waited, journey, now
    message_id: str                        # deterministic per (run, step): links are bound to it
    customer_id: str
    locale: str | None = None
    survey: SurveyDef | None = None        # set for survey steps


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str                              # CSS inlined, ready for mail clients
    text: str                              # plain-text part
    preheader: str = ""
    headers: dict[str, str] = field(default_factory=dict)   # List-Unsubscribe, ...
    template_file: str = ""                # which file won (locale variant or not)


class Renderer(Protocol):
    def __call__(self, request: RenderRequest) -> RenderedEmail:
        """Render or raise ``postsale.errors.RenderError`` with a message a marketer can act on."""
        ...
