"""The service behind the chat, the API and MCP: clear errors, remembered answers, filters passed on."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.storage.filters import FilterError
from assistant.serving.service import Service
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
    assert not service.answer("Hva krevde KS om SLT?", where={"before": "2020-01-01"}).found
    with pytest.raises(FilterError, match="fylkesting"):
        service.answer("Hva krevde KS om SLT?", where={"kind": "fylkesting"})


def test_remembered_results_are_bounded_in_entries_and_bytes() -> None:
    from assistant.serving.service import Remembered

    memory: Remembered[str] = Remembered(len, entries=3, max_bytes=10_000)
    for n in range(5):
        assert memory.get(("q", n), lambda n=n: "x" * 1000) == "x" * 1000
    assert len(memory) == 3 and memory.bytes <= 3 * 1200
    assert memory.get(("q", 4), lambda: "recomputed") == "x" * 1000  # still there
    memory.get(("big",), lambda: "y" * 9_000)
    assert memory.bytes <= 10_000 and len(memory) == 1
    assert memory.get(("huge",), lambda: "z" * 20_000) == "z" * 20_000 and memory.bytes <= 10_000  # never kept


@pytest.mark.slow
def test_a_huge_question_and_history_are_cut_before_they_are_kept(built: Settings) -> None:
    """The probe's attack: 40 MB questions. What is answered, kept and hashed is at most the limit."""
    service = Service(built)
    huge = "Hva krevde KS om SLT? " + "x" * 40_000_000
    result = service.answer(huge, history=["y" * 10_000_000] * 30)
    assert len(result.question) == built.max_question_chars and result.note.startswith("Spørsmålet var svært langt")
    assert service._answers.bytes < 200_000
    assert service.answer(huge[: built.max_question_chars + 5], history=["y" * 2000] * 3) is result
