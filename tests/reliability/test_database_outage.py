"""The database unavailable (issue 9): ``POST /events`` answers 503 with Retry-After, never
500, when the database refuses (down, unreachable, locked past the busy timeout): the shop's
retry then delivers the batch, and nothing was half-taken (one transaction per batch).

The outage is injected where the API meets the store, as the driver reports it
(``sqlalchemy.exc.OperationalError``); a real SQLite lock held past models/db.py's 30-second
busy timeout was tried and left out: the request then waits well over a minute (see the note).
"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

import postsale.api.events as events_api
from models import Event as EventRow
from tests.api.conftest import live, order  # noqa: F401  (the module-scoped live server)


def test_post_events_answers_503_while_the_database_is_down_and_loses_nothing(live, monkeypatch):  # noqa: F811
    before = [order(f"dbo-ok-{i}", f"c-dbo-{i}") for i in range(3)]
    assert live.post_events(before).status_code == 202
    during = [order(f"dbo-down-{i}", f"c-dbo-{i}") for i in range(3)]

    def down(*args, **kwargs):
        raise OperationalError("INSERT INTO event ...", {}, ConnectionRefusedError("connection refused"))

    with monkeypatch.context() as patch:
        patch.setattr(events_api, "accept_parsed", down)
        response = live.post_events(during)
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After") and "retry" in response.json()["detail"]
    response = live.post_events(during)                 # the shop retries once it is back
    assert response.status_code == 202, response.text
    with Session(live.ctx.engine) as session:
        ids = set(session.scalars(select(EventRow.id).where(EventRow.id.like("dbo-%"))))
    assert ids == {e["id"] for e in before + during}
