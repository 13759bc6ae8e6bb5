"""The Retriever over the real corpus, model and FAISS index."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Retriever, StoreError
from assistant.ranking import Ranker
from assistant.retrieval import extract_window, followup_weight

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


def test_extract_is_the_best_sentence_with_its_neighbours_and_stays_short(retriever):
    """Line 7 is one 530-character quote; the answer sits in its middle."""
    hit = retriever.search("Hvor ofte skjer alvorlige voldshendelser i Oslo?", k=1)[0]
    chunk = retriever.stored.chunks[hit.chunk_id]
    assert "nærmest daglig alvorlige voldshendelser i Oslo" in hit.text
    assert len(chunk.text) > 500 and len(hit.text) <= 400 and hit.text in chunk.text
    assert hit.trimmed_before and hit.trimmed_after
    assert (hit.start_line, hit.end_line) == (7, 7)


def test_an_extract_that_ends_before_the_attribution_still_names_the_speaker():
    import numpy as np

    from assistant.chunking import Chunk
    from assistant.retrieval import _hit

    text = " ".join(["– Første setning er ganske lang og handler om barnevernet i kommunene."] * 6 + ["Slutt, sa Helgesen."])
    chunk = Chunk(text, "a.txt", 3, 3, speaker="sa Helgesen", sentence_lines=((3, 3),) * 7)
    features = {"passage": 0.8, "sentence": 0.9, "lexical": 0.0, "meeting": 0.0}
    early = _hit(chunk, 0, 1.0, features, np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]), None)
    late = _hit(chunk, 0, 1.0, features, np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9]), None)
    assert early.trimmed_after and not early.trimmed_before and early.speaker == "sa Helgesen"
    assert late.trimmed_before and late.text.endswith("sa Helgesen.") and late.speaker == ""


def test_extract_window_grows_both_ways_and_keeps_a_long_sentence_whole():
    spans = [(0, 100), (101, 200), (201, 300), (301, 400), (401, 500)]
    assert extract_window(spans, 2, 300) == (1, 3)
    assert extract_window(spans, 0, 300) == (0, 2)
    assert extract_window(spans, 4, 250) == (3, 4)
    assert extract_window([(0, 900)], 0, 400) == (0, 0)
    assert extract_window(spans, 2, 50) == (2, 2)


def test_compound_word_in_question_matches_inside_compound(retriever):
    hits = retriever.search("barnevern", k=3, mode="lexical")
    assert any("barnevernsfeltet" in h.text for h in hits)
    hits = retriever.search("tilskudd", k=1, mode="lexical")
    assert "rammetilskudd" in hits[0].text


def test_modes_rank_by_one_evidence_alone(retriever):
    question = "barnevern kostnader"
    dense = retriever.search(question, k=5, mode="dense")
    lexical = retriever.search(question, k=5, mode="lexical")
    assert [h.score for h in dense] == [h.dense for h in dense]
    assert [h.score for h in lexical] == [h.lexical for h in lexical]


def test_another_ranker_reorders_the_same_candidates(retriever):
    question = "Hva sa KS om barnevernet?"
    sentence_only = retriever.search(question, k=5, ranker=Ranker(weights={"sentence": 1.0}))
    assert [h.score for h in sentence_only] == sorted((h.sentence for h in sentence_only), reverse=True)


def test_long_history_turns_stay_bounded(retriever):
    import time

    started = time.perf_counter()
    hits = retriever.search("Og hva med kostnadene?", k=3, history=["y" * 200_000, "Hva sa KS om barnevernet?" * 2000])
    assert hits and time.perf_counter() - started < 2.0


def test_followup_needs_its_history(retriever):
    """Asked alone, "Hvor mye?" finds the police quote; after the question it follows, the costs."""
    alone = retriever.search("Hvor mye?", k=1)[0]
    followup = retriever.search("Hvor mye?", k=1, history=["Hvor mye økte kostnadene til barnevernet?"])[0]
    assert "kostnadene til barnevernsfeltet" not in alone.text
    assert "kostnadene til barnevernsfeltet" in followup.text


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
