"""Test doubles for the engine's injected collaborators."""

from __future__ import annotations

from postsale.errors import RenderError
from postsale.render.types import RenderedEmail, RenderRequest


class FakeRenderer:
    """A ``Renderer`` that renders nothing: it records each request and returns a stub email.

    ``FakeRenderer(fail={"kettle_tips"})`` raises ``RenderError`` for those templates, like the
    real renderer does on a missing variable; ``fail`` may also map a template to its message.
    """

    def __init__(self, fail: set[str] | dict[str, str] | None = None) -> None:
        self.fail = dict.fromkeys(fail, "") if isinstance(fail, (set, list, tuple)) else dict(fail or {})
        self.requests: list[RenderRequest] = []

    def __call__(self, request: RenderRequest) -> RenderedEmail:
        self.requests.append(request)
        if request.template in self.fail:
            raise RenderError(self.fail[request.template] or f"'{request.template}' is broken")
        return RenderedEmail(subject=f"{request.template} subject",
                             html=f"<p>{request.template} for {request.customer_id}</p>",
                             text=f"{request.template} for {request.customer_id}",
                             headers={"X-Message-Id": request.message_id},
                             template_file=f"{request.template}.html.j2")

    @property
    def templates(self) -> list[str]:
        """Templates rendered so far, in order."""
        return [r.template for r in self.requests]
