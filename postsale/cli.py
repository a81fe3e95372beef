"""The ``postsale`` console command: imports every module of ``postsale.commands``."""

from __future__ import annotations

import importlib
import pkgutil

import postsale.commands
from postsale.cli_app import app

for _module in pkgutil.iter_modules(postsale.commands.__path__):
    importlib.import_module(f"postsale.commands.{_module.name}")

__all__ = ["app"]

if __name__ == "__main__":
    app()
