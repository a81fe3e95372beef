"""What a person sees: headless Chromium opens the survey, unsubscribe and preferences pages.

Checks the rendered DOM (``--dump-dom``) and saves phone-sized screenshots under
``tests/artifacts/`` (git-ignored). Skips where Debian's ``chromium`` is not installed
(``apt-get install -y chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import Live, event, order, survey_path, unsubscribe_path

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


def chromium(profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--window-size=390,844", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def look(live: Live, path: str, name: str, profile: Path) -> str:
    """The page's DOM after Chromium rendered it, and a screenshot of it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    result = chromium(profile, "--dump-dom", f"--screenshot={shot}", live.url + path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 2000, "no screenshot"
    return result.stdout


def visible_text(dom: str) -> str:
    body = re.sub(r"(?s)<(style|head)[^>]*>.*?</\1>", " ", dom)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def test_the_survey_page_shows_the_clicked_answer_and_the_other_questions(live: Live, tmp_path: Path):
    live.post_events(event("br-delivered", "order.delivered", "c-browser", order_id="B1"))
    live.settle()
    [mail] = live.mail_to("c-browser@example.com")

    dom = look(live, survey_path(mail, 4), "survey-page", tmp_path / "profile")

    text = visible_text(dom)
    assert "A quick question" in text
    assert "we noted 4" in text and "Press “Send” to confirm it" in text
    assert "How happy are you with your order?" in text and "1 is the lowest, 5 the highest." in text
    assert "What mattered most? (optional)" in text and "Anything we could do better? (optional)" in text
    assert re.search(r'<input type="radio" name="q-score" value="4" checked="">', dom)
    assert len(re.findall(r'name="q-score"', dom)) == 5
    assert re.search(r'<button type="submit">Send</button>', dom)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in dom
    assert "<script" not in dom


def test_the_unsubscribe_and_preferences_pages(live: Live, tmp_path: Path):
    live.post_events(order("br-order", "c-browser2"))
    live.settle()
    [mail] = live.mail_to("c-browser2@example.com")
    path = unsubscribe_path(mail)

    confirm = visible_text(look(live, path, "unsubscribe-page", tmp_path / "profile"))
    preferences = visible_text(look(live, f"{path}/preferences", "preferences-page", tmp_path / "profile"))

    assert "Unsubscribe c•••@example.com?" in confirm
    assert "We will still email you about your orders" in confirm
    assert "Unsubscribe" in confirm and "Choose what you receive instead" in confirm
    assert "Email preferences" in preferences and "always come" in preferences
    assert "Yes, keep sending them" in preferences and "No, stop them" in preferences
    assert live.client.get("/healthz").status_code == 200
