"""Which meeting a text is, which meeting a question names, and the where filters."""

from __future__ import annotations

from datetime import date

import pytest

from assistant.ingest.meetings import Meeting, describe, place_names, reference
from assistant.search.retrieval import FilterError, Where

TODAY = date(2026, 11, 27)
PLACES = {"Bergvik", "Vestfjord", "Fjordvik"}


def test_front_matter_fields_win_and_say_so():
    m = describe("Bergvik kommunestyre 6. februar 2025\n\nTekst.", "protokoll.md",
                 {"title": "Protokoll", "date": "2025-02-06", "kind": "kommunestyre"}, "front matter")
    assert (m.title, m.date, m.kind) == ("Protokoll", "2025-02-06", "kommunestyre")
    assert m.origins == {"title": "front matter", "date": "front matter", "kind": "front matter", "body": "text"}
    assert m.body == "Bergvik kommunestyre"


def test_sidecar_dates_may_be_written_out_or_yaml_dates():
    assert describe("x", "a.txt", {"date": "6. februar 2025"}, "sidecar").date == "2025-02-06"
    assert describe("x", "a.txt", {"date": date(2024, 4, 26)}, "sidecar").date == "2024-04-26"


def test_file_name_date_then_text_title_and_kind():
    m = describe("KS møtte fredag 26. april kommunal- og distriktsminister Erling Sande.\n", "ks-konsultasjonsmote-2024-04-26.txt")
    assert (m.date, m.origins["date"]) == ("2024-04-26", "file name")
    assert (m.title, m.origins["title"]) == ("KS konsultasjonsmøte", "file name")  # the first line is a sentence
    assert m.kind == "konsultasjonsmøte" and m.body == "KS"
    assert m.label() == "KS konsultasjonsmøte 26.04.2024"


def test_date_from_the_text_completed_with_the_year_of_the_name():
    m = describe("# Styremøte i KS\n\nStyret møttes fredag 26. april på KS-huset.\n", "styremote-2024.md")
    assert (m.date, m.origins["date"]) == ("2024-04-26", "text")
    assert (m.title, m.kind) == ("Styremøte i KS", "styremøte")
    assert describe("# Referat\n\nIngen dato her.", "referat.md").date == ""


def test_meeting_round_trips_through_json():
    m = describe("# Fylkestinget i Vestfjord 22. oktober 2024\n\nTekst.", "vestfjord-fylkesting-2024-10-22.html")
    assert Meeting.from_json(m.to_json()) == m and m.body == "Vestfjord fylkesting"
    assert place_names([m]) == {"Vestfjord"}


@pytest.mark.parametrize(
    ("question", "day", "matches"),
    [
        ("Hva foreslo KS om SLT i konsultasjonsmøtet i april 2024?", date(2024, 4, 26), True),
        ("Hva foreslo KS om SLT i konsultasjonsmøtet i april 2024?", date(2025, 4, 24), False),
        ("Hva skjedde 26. april?", date(2024, 4, 26), True),
        ("Hva skjedde 26. april?", date(2024, 4, 25), False),
        ("Hva sa KS høsten 2023?", date(2023, 10, 20), True),
        ("Kva sa KS hausten 2024?", date(2024, 10, 18), True),
        ("Hva sa KS i fjor?", date(2025, 4, 24), True),  # today is 2026-11-27
        ("Hva sa KS i fjor?", date(2024, 4, 26), False),
        ("Hva ble sagt på vårmøtet 2025?", date(2025, 4, 24), True),
        ("What did KS say in the April 2024 consultation?", date(2024, 4, 26), True),
        ("What did the board decide on 5 September 2024?", date(2024, 9, 5), True),
        ("Hva ble vedtatt 2024-06-13?", date(2024, 6, 13), True),
        ("Hva ble vedtatt 13.06.2024?", date(2024, 6, 13), True),
    ],
)
def test_dates_and_periods_named_in_questions(question: str, day: date, matches: bool):
    named = reference(question, TODAY, PLACES)
    assert named.periods or named.month_days
    meeting = Meeting(date=day.isoformat(), kind=next(iter(named.kinds), ""))  # the kind, if named, matches
    assert (named.match(meeting) == 1.0) == matches


@pytest.mark.parametrize(
    "question",
    [
        "Hvor mye økte kostnadene fra 2021 til 2022?",
        "Hva sa KS om barnevernet?",
        "Did child welfare costs fall?",
        "What may the municipalities do?",
        "Hva krevde KS om statsbudsjettet for 2025?",
    ],
)
def test_questions_that_name_no_meeting(question: str):
    assert not reference(question, TODAY, PLACES)


def test_kinds_and_places():
    named = reference("Hva vedtok Bergvik kommunestyre i juni?", TODAY, PLACES)
    assert named.kinds == {"kommunestyre"} and named.places == {"bergvik"} and named.month_days == ((6, None),)
    june = Meeting("Protokoll", "2024-06-13", "kommunestyre", "Bergvik kommunestyre")
    february = Meeting("Protokoll", "2025-02-06", "kommunestyre", "Bergvik kommunestyre")
    county = Meeting("Fylkestinget", "2024-10-22", "fylkesting", "Vestfjord fylkesting")
    assert named.match(june) == 1.0 > named.match(february) > named.match(county) == 0.0
    assert reference("What did the county council decide?", TODAY, PLACES).kinds == {"fylkesting"}
    assert reference("Kva sa fylkestinget i Vestfjord?", TODAY, PLACES).places == {"vestfjord"}


def test_the_words_naming_a_meeting_leave_the_question_to_search_inside_it():
    named = reference("Hva foreslo KS om SLT i konsultasjonsmøtet i april 2024?", TODAY, PLACES)
    assert named.rest == "Hva foreslo KS om SLT ?"
    assert reference("in the April 2024 consultation, what did KS say about SLT?", TODAY, PLACES).rest.endswith(
        "what did KS say about SLT?"
    )


def test_where_filters_are_checked():
    where = Where.of({"kind": "kommunestyre", "after": "2024-01-01", "before": "2024-12-31"})
    meeting = Meeting("P", "2024-06-13", "kommunestyre", "Bergvik kommunestyre")
    assert where.admits("a.md", meeting)
    assert not where.admits("a.md", Meeting("P", "2025-02-06", "kommunestyre"))
    assert not where.admits("a.md", Meeting("P", "2024-06-13", "fylkesting"))
    assert not where.admits("a.md", Meeting("P", "", "kommunestyre"))  # no date: outside any range
    assert Where.of({"source": "a.md"}).admits("a.md", Meeting()) and not Where.of({"source": "b.md"}).admits("a.md", Meeting())
    assert not Where.of({}) and not Where.of(None) and not Where.of({"kind": ""})
    with pytest.raises(FilterError, match="unknown filter"):
        Where.of({"year": 2024})
    with pytest.raises(FilterError, match="after must be a date"):
        Where.of({"after": "i fjor"})
