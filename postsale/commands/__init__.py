"""One module per CLI command; each registers itself on ``postsale.cli_app.app``."""
