"""Fixtures for the spec tests: the SPEC.md examples, and a journeys folder builder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

@pytest.fixture
def spec_journey() -> str:
    return (FIXTURES / "post-purchase.yaml").read_text()


@pytest.fixture
def spec_policy() -> str:
    return (FIXTURES / "policy.yaml").read_text()


@pytest.fixture
def write():
    """write(folder, {name: text}) -> folder, dedenting each text."""
    def _write(folder: Path, files: dict[str, str]) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(textwrap.dedent(text))
        return folder
    return _write
