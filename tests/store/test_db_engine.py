"""The engine's PostgreSQL connection settings: a dropped network ends in an error, not a hang."""

from __future__ import annotations

from models.db import POSTGRES_TIMEOUTS, postgres_timeouts


def test_postgres_connections_get_timeouts_and_keepalives_by_default():
    assert postgres_timeouts("postgresql+psycopg://u@db.example/postsale") == POSTGRES_TIMEOUTS
    assert POSTGRES_TIMEOUTS["connect_timeout"] > 0 and POSTGRES_TIMEOUTS["tcp_user_timeout"] > 0


def test_settings_in_the_url_win():
    given = postgres_timeouts("postgresql+psycopg://u@db.example/postsale?connect_timeout=3&keepalives=0")
    assert "connect_timeout" not in given and "keepalives" not in given
    assert given["tcp_user_timeout"] == POSTGRES_TIMEOUTS["tcp_user_timeout"]
