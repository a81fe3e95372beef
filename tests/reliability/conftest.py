"""Reliability suites reuse the render fixtures (a test layout, signed links) as they are."""

from tests.render.conftest import links, make_renderer  # noqa: F401  (fixtures)
from tests.delivery.conftest import make_ctx  # noqa: F401,E402  (fixtures)


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability_long: long fault/soak runs; skipped unless POSTSALE_LONG=1")
