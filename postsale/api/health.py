"""GET /healthz: the process answers and the database does (``SELECT 1``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from postsale.api.deps import services

router = APIRouter(tags=["health"])


@router.api_route("/healthz", methods=["GET", "HEAD"])
def healthz(request: Request) -> JSONResponse:
    svc = services(request)
    body = {"status": "ok", "database": "ok", "dispatcher": svc.dispatcher.status()}
    try:
        with svc.ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:   # any failure to reach it is "down", with its kind
        body.update(status="unavailable", database=f"unreachable: {type(exc).__name__}")
        return JSONResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
