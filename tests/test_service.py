"""The service behind the chat, the API and MCP: clear errors, remembered answers, filters passed on."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.service import Service
from assistant.settings import Settings


def test_a_missing_index_gives_the_fix_command_not_a_traceback(tmp_path: Path) -> None:
    reply = Service(Settings.from_env(sources=tmp_path, index=tmp_path / "index")).reply("Hva krevde KS om SLT?")
    assert reply.markdown.startswith("**Indeksen kan ikke brukes.**")
    assert "python \\-m assistant build" in reply.markdown


@pytest.mark.slow
def test_answers_are_remembered_per_question_and_options(built: Settings) -> None:
    service = Service(built)
    first = service.answer("Hva krevde KS om SLT?")
    assert service.answer("Hva krevde KS om SLT?") is first
    assert service.answer("Hva krevde KS om SLT?", k=1) is not first
    assert service.answer("Hva krevde KS om SLT?", history=["Hva sa KS om barnevernet?"]) is not first
    assert service.search("SLT", 2) == service.search("SLT", 2) and len(service.search("SLT", 2)) == 2
    assert service.answer("Hva krevde KS om SLT?", where={"kind": "konsultasjonsmøte"}).found
    assert not service.answer("Hva krevde KS om SLT?", where={"kind": "fylkesting"}).found
