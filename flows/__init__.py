"""Prefect flows: thin over the engine (claim work, call postsale, record artifacts)."""
