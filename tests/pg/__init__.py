"""Tests that need PostgreSQL (``POSTSALE_TEST_PG_URL``): concurrent dispatchers, migrations, demo."""
