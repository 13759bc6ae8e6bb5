"""Serving: when the exposure warning is printed."""

from __future__ import annotations

from assistant.serving.auth import Credentials
from assistant.serving.server import exposure_warning


def test_exposure_warning_only_for_open_hosts_without_auth() -> None:
    assert exposure_warning("127.0.0.1", Credentials()) is None
    assert exposure_warning("0.0.0.0", Credentials.load(auth="bruker:passord", environ={})) is None
    assert "--auth" in (exposure_warning("0.0.0.0", Credentials()) or "")


def test_tokens_alone_leave_the_page_open_and_say_so() -> None:
    tokens = Credentials.load(environ={"ASSISTANT_API_TOKENS": "a" * 32})
    assert "the page is open" in (exposure_warning("0.0.0.0", tokens) or "")
