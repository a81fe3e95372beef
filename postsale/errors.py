"""One exception root for postsale.

    PostsaleError
    ├── InvalidJourney (ValueError)     a journey, policy or template file is wrong
    ├── InvalidEvent (ValueError)       an incoming event is wrong; names the field
    ├── ExpressionError (ValueError)    an `if` expression failed to compile or evaluate
    ├── RenderError (ValueError)        a template failed to render
    ├── ConfigError (ValueError)        settings are missing or unsafe
    └── DeliveryError (RuntimeError)    a provider refused or failed a send
        └── TransientDeliveryError      worth retrying later (429, 5xx, timeouts)
"""

from __future__ import annotations


class PostsaleError(Exception):
    """Root of every error postsale raises on purpose."""


class InvalidJourney(PostsaleError, ValueError):
    def __init__(self, message: str, *, file: str = "", line: int = 0, hint: str = "") -> None:
        self.message, self.file, self.line, self.hint = message, file, line, hint
        super().__init__(self.formatted())

    def formatted(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"


class InvalidEvent(PostsaleError, ValueError):
    def __init__(self, field: str, message: str, *, event_id: str | None = None) -> None:
        self.field, self.message, self.event_id = field, message, event_id
        super().__init__(f"{field}: {message}")


class ExpressionError(PostsaleError, ValueError):
    pass


class RenderError(PostsaleError, ValueError):
    pass


class ConfigError(PostsaleError, ValueError):
    pass


class DeliveryError(PostsaleError, RuntimeError):
    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        self.status, self.body = status, body
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    def __init__(self, message: str, *, status: int | None = None, body: str | None = None,
                 retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, body=body)
