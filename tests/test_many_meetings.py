"""Ten meeting texts at once (the evaluation bank's corpus): named meetings, filters, grouped and whole-list answers."""

from __future__ import annotations

import pytest

from assistant import answer
from assistant.answering.answer import asks_for_several
from assistant.storage.filters import FilterError
from assistant.answering.render import escape

pytestmark = pytest.mark.slow

APRIL_2024 = "ks-konsultasjonsmote-2024-04-26.txt"
SLT_2024 = "tiltaksplan for å styrke SLT-samarbeidet"


def test_a_named_meeting_is_preferred_over_the_same_topic_elsewhere(bank_retriever):
    named = bank_retriever.search("Hva foreslo KS om SLT i konsultasjonsmøtet i april 2024?", k=5)
    assert named[0].source == APRIL_2024 and SLT_2024 in named[0].text
    assert named[0].title == "KS konsultasjonsmøte 26.04.2024" and named[0].date == "2024-04-26"
    assert named[0].kind == "konsultasjonsmøte" and named[0].meeting == 1.0
    later = bank_retriever.search("Hva sa KS om SLT-tiltaksplanen på vårmøtet 2025?", k=3)
    assert later[0].source == "ks-konsultasjonsmote-2025-04-24.txt"
    last_year = bank_retriever.search("Hva sa KS om SLT i fjor?", k=3)  # today is fixed at 2026-11-27
    assert {h.date[:4] for h in last_year} == {"2025"}


def test_a_place_and_kind_pick_the_council(bank_retriever):
    hits = bank_retriever.search("Hva vedtok Bergvik kommunestyre om SLT-koordinator i juni?", k=3)
    assert hits[0].source == "bergvik-kommunestyre-2024-06-13.md"


def test_where_filters_every_hit(bank_retriever):
    kind = bank_retriever.search("Hva sa de om SLT?", k=10, where={"kind": "kommunestyre"})
    assert kind and {h.kind for h in kind} == {"kommunestyre"}
    dated = bank_retriever.search("Hva sa de om SLT?", k=10, where={"after": "2024-09-01", "before": "2024-12-31"})
    assert dated and all("2024-09-01" <= h.date <= "2024-12-31" for h in dated)
    source = bank_retriever.search("barnevern", k=10, where={"source": APRIL_2024})
    assert source and {h.source for h in source} == {APRIL_2024}
    with pytest.raises(FilterError, match="finnes-ikke.txt"):
        bank_retriever.search("barnevern", k=5, where={"source": "finnes-ikke.txt"})


def test_citations_name_their_meeting_and_group_by_it(bank_retriever):
    a = answer("Hvilke forslag om SLT kom KS med?", bank_retriever)
    sources = [c.source for c in a.citations]
    assert len(set(sources)) >= 2
    assert sources == sorted(sources, key=sources.index)  # each meeting's extracts together
    first = a.citations[0]
    assert first.label() == f"[1] {first.title}, linje {first.start_line}" and first.title
    for c in a.citations:
        assert f"#### {escape(c.title)}" in a.markdown
    assert a.markdown.index(f"#### {escape(a.citations[0].title)}") < a.markdown.index(f"#### {escape(a.citations[-1].title)}")
    assert escape(first.source) in a.markdown  # the file name is in "Kilder"
    data = a.to_json()
    assert {"title", "date", "kind", "source"} <= set(data["citations"][0]) and data["hits"][0]["title"]


def test_one_meeting_gets_no_heading(bank_retriever):
    a = answer("Hva sa KS om SLT?", bank_retriever, where={"source": APRIL_2024})
    assert a.found and {c.source for c in a.citations} == {APRIL_2024}
    assert "####" not in a.markdown


def test_a_list_comes_whole_with_its_lead_in_once(bank_retriever):
    question = "Hvilke tiltak krevde KS av staten for å styrke klima- og naturhensyn i april 2024?"
    assert asks_for_several(question)
    a = answer(question, bank_retriever)
    items = [c for c in a.citations if c.lead_in.startswith("KS pekte på områder hvor staten kan bidra")]
    shown = [c.start_line for c in items]  # items whose best sentence answers about as well as the best item's
    assert shown == sorted(shown) and set(shown) <= {38, 39, 40, 41, 42} and len(shown) >= 4
    assert a.markdown.count("KS pekte på områder hvor staten kan bidra") == 1
    assert all(f"**{escape(c.highlight)}**" in a.markdown for c in items)


@pytest.mark.parametrize(
    "question",
    ["Hvilke krav stilte KS?", "Hvem deltok i møtet?", "What measures did KS ask the state for in 2024?", "Which ministers came?"],
)
def test_questions_for_several_things(question):
    assert asks_for_several(question)


@pytest.mark.parametrize("question", ["Hva krevde KS om SLT", "What did Helgesen say?", "Hvor mye økte kostnadene?"][1:])
def test_questions_for_one_thing(question):
    assert not asks_for_several(question)


def test_a_followup_prefers_the_meeting_the_conversation_named(bank_retriever):
    """The conversation's meeting is boosted, as for a question that names it: a preference, not a filter."""
    question, earlier = "Og hva med opplæringskontorene?", "Hva foreslo KS om SLT i konsultasjonsmøtet i april 2024?"
    answer_ = "opplæringskontorene fortsatt kan være et viktig bindeledd"
    alone = bank_retriever.search(question, k=10)
    followup = bank_retriever.search(question, k=10, history=[earlier])
    rank = lambda hits: next(i for i, h in enumerate(hits) if h.source == APRIL_2024 and answer_ in h.text)  # noqa: E731
    assert alone[0].source != APRIL_2024 and rank(followup) < rank(alone)
    assert all(h.meeting == float(h.source == APRIL_2024) for h in followup)
