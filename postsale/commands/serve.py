"""`postsale serve`: the HTTP API and the in-process dispatcher (see ``postsale.serve``)."""

from __future__ import annotations

import typer

from postsale.cli_app import app, console
from postsale.commands._common import fail, settings
from postsale.errors import PostsaleError


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every one)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    max_body_bytes: int = typer.Option(5 * 1024 * 1024, "--max-body-bytes", min=1024,
                                       envvar="POSTSALE_MAX_BODY_BYTES",
                                       help="Largest body POST /events and the webhooks accept (413 above)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug, info, warning, error."),
) -> None:
    """Serve the HTTP API (SPEC §7) and dispatch every POSTSALE_DISPATCH_INTERVAL seconds.

    Events posted to /events are dispatched at once for the customers they touch; emails land
    in the outbox (POSTSALE_OUTBOX) unless POSTSALE_TRANSPORT says otherwise. Without
    POSTSALE_API_TOKEN, a loopback run generates a token and prints it; on another interface
    POSTSALE_SECRET must be a real secret. SIGINT/SIGTERM stop cleanly.
    """
    from postsale.serve import ServeOptions, run

    cfg = settings()
    try:
        code = run(cfg, ServeOptions(host=host, port=port, max_body_bytes=max_body_bytes, log_level=log_level),
                   announce=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except PostsaleError as exc:
        fail(str(exc))
        return
    raise typer.Exit(code)
