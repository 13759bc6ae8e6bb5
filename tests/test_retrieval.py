"""The Retriever over the real corpus, model and FAISS index."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Retriever, StoreError
from assistant.retrieval import Fusion, followup_weight

pytestmark = pytest.mark.slow

SLT = "tiltaksplan for å styrke SLT-samarbeidet"


def test_search_returns_cited_hits_best_first(retriever):
    hits = retriever.search("Hva krevde KS om SLT?", k=5)
    assert 1 <= len(hits) <= 5
    assert SLT in hits[0].text
    assert (hits[0].source, hits[0].start_line, hits[0].end_line) == ("ks-konsultasjonsmote-2024-04-26.txt", 17, 17)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_english_question_finds_the_norwegian_passage(retriever):
    assert SLT in retriever.search("What did KS demand on SLT?", k=1)[0].text


def test_every_chunk_is_verbatim_within_its_line_span(retriever, built):
    """The citation a user checks must contain the extract: over the whole indexed corpus."""
    for chunk in retriever.stored.chunks:
        lines = (Path(built.sources) / chunk.source).read_text(encoding="utf-8").split("\n")
        span = " ".join(" ".join(lines[chunk.start_line - 1 : chunk.end_line]).split())
        assert chunk.text in span.replace("• ", ""), (chunk.source, chunk.start_line, chunk.text[:60])


def test_compound_word_in_question_matches_inside_compound(retriever):
    hits = retriever.search("barnevern", k=3, mode="lexical")
    assert any("barnevernsfeltet" in h.text for h in hits)
    hits = retriever.search("tilskudd", k=1, mode="lexical")
    assert "rammetilskudd" in hits[0].text


def test_lexical_weight_depends_on_language_and_entities():
    fusion = Fusion()
    norwegian = fusion.lexical_weight("Hva krevde KS om barnevernet?")
    english = fusion.lexical_weight("What did the association demand about child welfare?")
    assert norwegian > english
    assert fusion.lexical_weight("What did Helgesen say?") > fusion.lexical_weight("What did she say?")
    assert fusion.lexical_weight("What happened in 2021?") > fusion.lexical_weight("What happened then?")
    fixed = Fusion(adaptive=False)
    assert fixed.lexical_weight("Hva krevde KS?") == fixed.lexical_weight("What did KS demand?")


def test_followup_is_read_in_context(retriever):
    alone = retriever.search("Og hva med kostnadene?", k=1)[0]
    followup = retriever.search("Og hva med kostnadene?", k=1, history=["Hva sa KS om barnevernet?"])[0]
    assert "kostnadene til barnevernsfeltet" in followup.text
    assert alone.text != followup.text or "barnevern" in alone.text


def test_english_followup(retriever):
    hit = retriever.search("What about the police?", k=3, history=["What did KS say about youth crime?"])
    assert any("politi" in h.text.lower() for h in hit)


def test_self_contained_question_is_not_dragged_back(retriever):
    hit = retriever.search("Hvem representerte storbynettverket?", k=1, history=["Hva sa KS om barnevernet?"])[0]
    assert "Eirik Lae Solberg" in hit.text


def test_followup_weight_fades_with_length_and_similarity():
    assert followup_weight("Og kostnadene?", 0.2) > followup_weight("Og kostnadene?", 0.9)
    assert followup_weight("Og kostnadene?", 0.5) > followup_weight("Hva med de økonomiske kostnadene nå?", 0.5)
    assert followup_weight("Hvem representerte storbynettverket i møtet med regjeringen i april?", 0.1) == 0.0


def test_empty_query_gives_no_hits(retriever):
    assert retriever.search("   ", k=5) == []


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="python -m assistant build"):
        Retriever.load(tmp_path / "nowhere")


def test_index_refuses_another_model(built):
    with pytest.raises(StoreError, match="cannot be queried with 'intfloat/multilingual-e5-small'"):
        Retriever.load(built.index, model="intfloat/multilingual-e5-small")
