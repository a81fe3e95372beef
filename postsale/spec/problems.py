"""Problems found in journeys, templates and the policy, reported as ``file:line: message``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    message: str
    severity: Literal["error", "warning"] = "error"
    hint: str = ""

    def __str__(self) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}: {tag}{self.message}{hint}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"
