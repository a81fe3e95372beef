"""Alembic revision scripts, oldest first by their numeric prefix."""
