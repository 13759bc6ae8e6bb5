"""The Retriever: over the real corpus, model and FAISS index (slow), and over a word index without the model (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Retriever, StoreError
from assistant.search.ranking import Ranker
from assistant.search.retrieval import extract_window, followup_weight

SLT = "tiltaksplan for å styrke SLT-samarbeidet"


@pytest.mark.slow
def test_search_returns_cited_hits_best_first(retriever):
    hits = retriever.search("Hva krevde KS om SLT?", k=5)
    assert 1 <= len(hits) <= 5
    assert SLT in hits[0].text
    assert (hits[0].source, hits[0].start_line, hits[0].end_line) == ("ks-konsultasjonsmote-2024-04-26.txt", 17, 17)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.slow
def test_english_question_finds_the_norwegian_passage(retriever):
    assert SLT in retriever.search("What did KS demand on SLT?", k=1)[0].text


@pytest.mark.slow
def test_every_chunk_is_verbatim_within_its_line_span(retriever, built):
    """The citation a user checks must contain the extract: over the whole indexed corpus."""
    for chunk in retriever.stored.chunks:
        lines = (Path(built.sources) / chunk.source).read_text(encoding="utf-8").split("\n")
        span = " ".join(" ".join(lines[chunk.start_line - 1 : chunk.end_line]).split())
        assert chunk.text in span.replace("• ", ""), (chunk.source, chunk.start_line, chunk.text[:60])


@pytest.mark.slow
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

    from assistant.ingest.chunking import Chunk
    from assistant.search.retrieval import _hit

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


@pytest.mark.slow
def test_compound_word_in_question_matches_inside_compound(retriever):
    hits = retriever.search("barnevern", k=3, mode="lexical")
    assert any("barnevernsfeltet" in h.text for h in hits)
    hits = retriever.search("tilskudd", k=1, mode="lexical")
    assert "rammetilskudd" in hits[0].text


@pytest.mark.slow
def test_modes_rank_by_one_evidence_alone(retriever):
    question = "barnevern kostnader"
    dense = retriever.search(question, k=5, mode="dense")
    lexical = retriever.search(question, k=5, mode="lexical")
    assert [h.score for h in dense] == [h.dense for h in dense]
    assert [h.score for h in lexical] == [h.lexical for h in lexical]


@pytest.mark.slow
def test_another_ranker_reorders_the_same_candidates(retriever):
    question = "Hva sa KS om barnevernet?"
    sentence_only = retriever.search(question, k=5, ranker=Ranker(weights={"sentence": 1.0}))
    assert [h.score for h in sentence_only] == sorted((h.sentence for h in sentence_only), reverse=True)


@pytest.mark.slow
def test_long_history_turns_stay_bounded(retriever):
    import time

    started = time.perf_counter()
    hits = retriever.search("Og hva med kostnadene?", k=3, history=["y" * 200_000, "Hva sa KS om barnevernet?" * 2000])
    assert hits and time.perf_counter() - started < 2.0


@pytest.mark.slow
def test_followup_needs_its_history(retriever):
    """Asked alone, "Når?" finds another passage; after the question it follows, the costs and their years."""
    alone = retriever.search("Når?", k=1)[0]
    followup = retriever.search("Når?", k=1, history=["Hvor mye økte kostnadene til barnevernet?"])[0]
    assert "kostnadene til barnevernsfeltet" not in alone.text
    assert "kostnadene til barnevernsfeltet" in followup.text


@pytest.mark.slow
def test_english_followup(retriever):
    hit = retriever.search("What about the police?", k=3, history=["What did KS say about youth crime?"])
    assert any("politi" in h.text.lower() for h in hit)


@pytest.mark.slow
def test_self_contained_question_is_not_dragged_back(retriever):
    hit = retriever.search("Hvem representerte storbynettverket?", k=1, history=["Hva sa KS om barnevernet?"])[0]
    assert "Eirik Lae Solberg" in hit.text


def test_followup_weight_fades_with_length_and_similarity():
    assert followup_weight("Og kostnadene?", 0.2) > followup_weight("Og kostnadene?", 0.9)
    assert followup_weight("Og kostnadene?", 0.5) > followup_weight("Hva med de økonomiske kostnadene nå?", 0.5)
    assert followup_weight("Hvem representerte storbynettverket i møtet med regjeringen i april?", 0.1) == 0.0


@pytest.mark.slow
def test_empty_query_gives_no_hits(retriever):
    assert retriever.search("   ", k=5) == []


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="python -m assistant build"):
        Retriever.load(tmp_path / "nowhere")


@pytest.mark.slow
def test_index_refuses_another_model(built):
    with pytest.raises(StoreError, match="cannot be queried with 'intfloat/multilingual-e5-small'"):
        Retriever.load(built.index, model="intfloat/multilingual-e5-small")


# --- Fast: a real Retriever over a word index (tests/fakes.py), no model -------------------------

import dataclasses  # noqa: E402
from datetime import date  # noqa: E402

import numpy as np  # noqa: E402

from assistant.ingest.chunking import sentence_spans  # noqa: E402
from assistant.ingest.lexical import looks_norwegian  # noqa: E402
from assistant.ingest.meetings import Meeting, Reference  # noqa: E402
from assistant.search.retrieval import TURN_CHARS, FilterError, Where, named_sources  # noqa: E402

from .fakes import BACKGROUND, BY, KS, MEETINGS, NEVER, RANKER, TEXTS, WordEmbedder, embed, word_index, word_retriever  # noqa: E402

BARNEVERN = "Kostnadene til barnevernet økte"


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """The root of a word index of the two meetings above; each test gets its own Retriever over it."""
    return word_index(tmp_path_factory.mktemp("words") / "index", TEXTS, MEETINGS)


def test_where_reads_a_mapping_and_passes_a_where_through():
    assert Where.of(None) == Where() and not Where.of(None) and not Where.of({})
    where = Where.of({"source": KS, "kind": "", "after": "2024-01-01", "before": date(2024, 12, 31)})
    assert where == Where(source=KS, after=date(2024, 1, 1), before=date(2024, 12, 31))
    assert Where.of(where) is where
    assert Where.of({"kind": "kommunestyre", "after": None}) == Where(kind="kommunestyre")
    for one in (Where(source=KS), Where(kind="styremøte"), Where(after=date(2024, 1, 1)), Where(before=date(2024, 1, 1))):
        assert one, one


def test_where_refuses_unknown_keys_and_bad_dates_by_name():
    with pytest.raises(FilterError, match=r"unknown filter \['place'\]; use source, kind, after, before"):
        Where.of({"place": "Bergvik"})
    with pytest.raises(FilterError, match="after must be a date such as 2024-04-26, not '26.04.2024'"):
        Where.of({"after": "26.04.2024"})
    with pytest.raises(FilterError, match="before must be a date"):
        Where.of({"before": "snart"})


def test_where_admits_by_source_kind_and_inclusive_dates():
    meeting = Meeting(title="Bystyret", date="2025-03-01", kind="Kommunestyre")
    assert Where().admits(BY, meeting) and Where().admits(BY, Meeting())
    assert Where(source=BY).admits(BY, meeting) and not Where(source=KS).admits(BY, meeting)
    assert Where(kind="kommunestyre").admits(BY, meeting) and not Where(kind="styremøte").admits(BY, meeting)
    assert Where(after=date(2025, 3, 1), before=date(2025, 3, 1)).admits(BY, meeting)
    assert not Where(after=date(2025, 3, 2)).admits(BY, meeting)
    assert not Where(before=date(2025, 2, 28)).admits(BY, meeting)
    assert not Where(after=date(2000, 1, 1)).admits(BY, Meeting()) and not Where(before=date(2099, 1, 1)).admits(BY, Meeting())


def test_search_ranks_the_passage_that_answers_first_and_cites_it(words):
    hits = word_retriever(words).search("Hva krevde KS om barnevernet?", k=3)
    assert len(hits) == 3 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    first = hits[0]
    assert first.text.startswith("KS krevde mer penger til barnevernet.") and first.text.endswith("bærer dem alene.")
    assert (first.source, first.start_line, first.end_line, first.unit) == (KS, 3, 4, "line")
    assert (first.heading, first.title, first.date, first.kind) == (
        "Møte med regjeringen", "KS konsultasjonsmøte 26.04.2024", "2024-04-26", "konsultasjonsmøte"
    )
    assert not first.trimmed_before and not first.trimmed_after and first.sentences == (0, 2)
    assert first.score == pytest.approx(0.3 * first.dense + 0.7 * first.sentence + 0.1 * first.lexical)
    assert first.lexical > 0 and first.sentence > first.dense > 0  # the heading dilutes the passage, not its sentence
    assert len(word_retriever(words).search("Hva krevde KS om barnevernet?", k=1)) == 1


def test_a_list_item_carries_its_lead_in(words):
    hit = word_retriever(words).search("Hva sa KS om politiet og ressurser?", k=1)[0]
    assert (hit.text, hit.lead_in, hit.start_line, hit.end_line) == (
        "Politiet må få flere ressurser.", "KS pekte på flere tiltak:", 7, 7
    )


def test_modes_rank_by_one_evidence_alone_without_the_model(words):
    r = word_retriever(words)
    dense = r.search("barnevernet kostnader", k=5, mode="dense")
    lexical = r.search("barnevernet kostnader", k=5, mode="lexical")
    assert dense and [h.score for h in dense] == [h.dense for h in dense]
    assert lexical and [h.score for h in lexical] == [h.lexical for h in lexical]
    with pytest.raises(ValueError, match="mode must be one of"):
        r.search("barnevernet", mode="bm25")


def test_search_evidence_for_the_decline_decision(words):
    r = word_retriever(words)
    question = "What is the weather in Bergen tomorrow?"
    search = r.run(question)
    assert search.query == question and np.allclose(search.vector, embed(question))
    assert search.background == pytest.approx(max(float(embed(question) @ embed(t)) for t in BACKGROUND))
    assert search.background > r.run("Hva krevde KS om barnevernet?").background + 0.3
    assert search.coverage == r.stored.lexical.coverage(question)
    assert search.coverage == 0.0 and r.run("barnevernet").coverage == 1.0


def test_sentence_scores_are_the_cosines_of_the_extracts_sentences(tmp_path):
    """A long paragraph: the extract is its best sentence with neighbours, and each of them is scored."""
    topics = ["skolene", "veiene", "havna", "barnehagene", "barnevernet", "eldreomsorgen", "brannvesenet", "biblioteket"]
    text = " ".join(f"Kommunen brukte i fjor mange millioner kroner på {t} og på arbeidet med {t} i hele regionen." for t in topics)
    r = word_retriever(word_index(tmp_path / "index", {"lang.txt": text}))
    search = r.run("Hvor mye brukte kommunen på barnevernet?")
    hit = search.hits[0]
    assert hit.trimmed_before and hit.trimmed_after and "barnevernet" in hit.text
    sentences = [hit.text[a:b] for a, b in sentence_spans(hit.text)]
    expected = [float(search.vector @ embed(s)) for s in sentences]
    assert len(sentences) == hit.sentences[1] - hit.sentences[0] < len(topics)
    assert search.sentence_scores(hit) == pytest.approx(expected, abs=1e-5)
    assert hit.sentence == pytest.approx(max(expected), abs=1e-5) and "barnevernet" in sentences[hit.best - hit.sentences[0]]


def test_any_passage_is_scored_as_the_ranking_scores_it(words):
    """Search.hit gives a list item that was not found the score the ranking would have given it."""
    r = word_retriever(words)
    dense_only = dataclasses.replace(RANKER, weights={"passage": 0.3, "sentence": 0.7, "meeting": 0.5})
    for question in ("Hva sa KS om politiet?", "Hva vedtok bystyret om skolene?"):
        search = r.run(question, k=10, ranker=dense_only)
        assert len(search.hits) == len(r.stored.chunks)
        for hit in search.hits:
            again = search.hit(hit.chunk_id)
            assert again.score == pytest.approx(hit.score, abs=1e-5) and again.dense == pytest.approx(hit.dense, abs=1e-5)
            assert again.sentence == pytest.approx(hit.sentence, abs=1e-5)
            assert dataclasses.replace(again, score=hit.score, dense=hit.dense, sentence=hit.sentence, lexical=hit.lexical) == hit
    assert {h.source for h in search.hits if h.meeting == 1.0} == {BY}


def test_an_empty_question_or_index_gives_no_hits(words, tmp_path):
    r = word_retriever(words)
    assert r.search("   ") == [] and r.run("").hits == []
    empty = word_retriever(word_index(tmp_path / "index", {"tom.txt": "\n"}))
    search = empty.run("Hva krevde KS?")
    assert search.hits == [] and search.coverage == 0.0


@pytest.mark.parametrize("flat_limit", [20_000, 4], ids=["flat", "ivf"])
def test_where_limits_the_search_to_the_documents_it_admits(tmp_path, flat_limit):
    r = word_retriever(word_index(tmp_path / "index", TEXTS, MEETINGS, flat_limit=flat_limit))
    question = "Hva krevde KS om barnevernet og skolene?"
    assert {h.source for h in r.search(question, k=10)} == {KS, BY}
    assert {h.source for h in r.search(question, k=10, where={"source": BY})} == {BY}
    assert {h.source for h in r.search(question, k=10, where={"kind": "Konsultasjonsmøte"})} == {KS}
    assert {h.source for h in r.search(question, k=10, where=Where(after=date(2025, 1, 1)))} == {BY}
    assert {h.source for h in r.search(question, k=10, where={"before": "2024-12-31"})} == {KS}
    assert r.search(question, where={"before": "2020-01-01"}) == []
    assert len(r.search(question, k=10, where={"source": KS})) == 6


def test_a_followup_is_read_with_the_question_before_it(words):
    """Asked alone, "Og kostnadene?" finds the school budget; after a question about child welfare, its costs."""
    alone = word_retriever(words).search("Og kostnadene?", k=1)[0]
    followup = word_retriever(words).search("Og kostnadene?", k=1, history=["Hva krevde KS om barnevernet?"])[0]
    assert alone.source == BY and BARNEVERN not in alone.text
    assert BARNEVERN in followup.text
    older = word_retriever(words).search("Og kostnadene?", k=1, history=["Hva krevde KS om barnevernet?", "Hva vedtok bystyret?"])
    assert older[0].source == BY  # the last question counts


def test_a_followup_stays_with_the_meeting_named_before(words):
    r = word_retriever(words)
    named = r.named_meeting(r.stored, "Og kostnadene?", ["Hva vedtok bystyret?"])
    assert named.kinds == frozenset({"kommunestyre"}) and named.rest == ""
    assert named_sources(r.stored, named) == frozenset({BY})
    hits = r.search("Og kostnadene?", k=2, history=["Hva vedtok bystyret?"])
    assert [h.source for h in hits] == [BY, BY] and hits[0].meeting == 1.0


def test_a_followup_stays_with_the_document_that_answered_before(words):
    r = word_retriever(words)
    assert r.named_meeting(r.stored, "Og kostnadene?", ["Hva krevde KS om barnevernet?"]) == Reference(sources=frozenset({KS}))
    assert r.named_meeting(r.stored, "Og kostnadene?") == Reference()
    self_contained = "Hva sa KS om kostnadene til barnevernet i kommunene nå?"
    assert r.named_meeting(r.stored, self_contained, ["Hva vedtok bystyret?"]) == Reference()
    own = r.named_meeting(r.stored, "Hva vedtok bystyret?", ["Hva krevde KS om barnevernet?"])
    assert own.kinds == frozenset({"kommunestyre"}) and own.rest


def test_named_sources_are_the_best_matching_documents(words):
    r = word_retriever(words)
    assert named_sources(r.stored, Reference()) == frozenset()
    assert named_sources(r.stored, Reference(kinds=frozenset({"kommunestyre"}))) == frozenset({BY})
    assert named_sources(r.stored, Reference(kinds=frozenset({"fylkesting"}))) == frozenset()
    both = Reference(periods=((date(2024, 1, 1), date(2025, 12, 31)),))
    assert named_sources(r.stored, both) == frozenset({KS, BY})


def test_only_the_last_turn_is_embedded_and_every_turn_is_cut(words):
    embedder = WordEmbedder()
    r = word_retriever(words, embedder=embedder)
    last = "Hva krevde KS om barnevernet? " + "y" * 3000
    search = r.run("z" * 3000, history=["Hva vedtok bystyret?", last])
    assert search.query == "z" * TURN_CHARS
    assert set(embedder.asked) == {"z" * TURN_CHARS, last[:TURN_CHARS]}
    embedder.asked.clear()
    r.run("Og kostnadene?", history=["Hva vedtok bystyret?"])
    assert "Hva vedtok bystyret?" in embedder.asked


def test_the_question_vector_leans_on_the_last_turn_only_for_short_followups(words):
    r = word_retriever(words)
    assert np.allclose(r.query_vector("Og kostnadene?"), embed("Og kostnadene?"))
    long = "Hva sa KS om kostnadene til barnevernet i kommunene nå?"
    assert np.allclose(r.query_vector(long, ["Hva vedtok bystyret?"]), embed(long))
    short = r.query_vector("Og kostnadene?", ["Hva vedtok bystyret?"])
    assert np.linalg.norm(short) == pytest.approx(1.0)
    context = embed("Hva vedtok bystyret?")
    assert short @ context > embed("Og kostnadene?") @ context + 0.2


def test_followup_weight_ends_at_eight_words_and_ignores_negative_similarity():
    seven, eight = "en to tre fire fem seks sju", "en to tre fire fem seks sju åtte"
    assert followup_weight(seven, 0.0) > 0 and followup_weight(eight, 0.0) == 0.0
    assert followup_weight("Og?", -0.5) == followup_weight("Og?", 0.0)
    assert 0 < followup_weight("Og?", 1.0) < followup_weight("Og?", 0.5) < followup_weight("Og?", 0.0) <= 0.7
    assert followup_weight("Og kostnadene?", 0.0) > followup_weight("Og de kostnadene?", 0.0)


def test_a_named_meeting_is_never_crowded_out(tmp_path):
    """Sixty passages about the question's words elsewhere do not hide the one in the meeting the question names."""
    texts = {
        "andre.txt": "\n\n".join(f"Kostnadene til skolene økte i kommune nummer {i}." for i in range(60)),
        BY: "Bystyret diskuterte veiene.\n",
    }
    r = word_retriever(word_index(tmp_path / "index", texts, {BY: MEETINGS[BY]}))
    assert BY not in {h.source for h in r.search("Hvor mye økte kostnadene til skolene?", k=61)}
    named = [h for h in r.search("Hvor mye økte kostnadene til skolene i kommunestyret?", k=61) if h.source == BY]
    assert len(named) == 1 and named[0].meeting == 1.0


def test_features_of_an_english_question_discount_bm25(words):
    r = word_retriever(words)
    question = "What did KS say about barnevernet?"
    ids, features = r.features(r.stored, embed(question), question, question)
    assert len(ids) == len(r.stored.chunks)
    english = 1.0 - looks_norwegian(question)
    assert 0 < english < 1 and features["lexical"].max() > 0
    assert np.allclose(features["lexical_en"], features["lexical"] * english)
    _, per_passage = r.stored.vectors_of(ids)
    assert np.allclose(features["sentence"], [(s @ embed(question)).max() for s in per_passage], atol=1e-5)
    assert not features["meeting"].any()


def test_refresh_switches_to_a_new_generation_and_searches_in_flight_keep_theirs(tmp_path):
    root = word_index(tmp_path / "index", {BY: TEXTS[BY]})
    r = word_retriever(root)
    assert r.refresh() is False
    before = r.run("Hva krevde KS om barnevernet?")
    word_index(root, TEXTS)
    assert r.refresh() is True and r.refresh() is False
    assert BARNEVERN in r.search("Hva krevde KS om barnevernet?", k=1)[0].text
    assert {h.source for h in before.hits} == {BY} and len(before.stored.chunks) == 2
    word_index(root, TEXTS, fingerprint="other-weights")
    with pytest.raises(StoreError, match="uses another model"):
        r.refresh()


def test_load_refuses_another_model_before_loading_it(words):
    with pytest.raises(StoreError, match="built with the model 'words' and cannot be queried with 'other'"):
        Retriever.load(words, model="other")


def test_the_extract_names_the_lines_of_its_own_sentences():
    from assistant.ingest.chunking import Chunk
    from assistant.search.retrieval import _hit

    sentence = "Dette er en setning som er lang nok til at bare noen få får plass i et utdrag på fire hundre tegn."
    text = " ".join([sentence] * 8)
    lines = tuple((n, n + 1) for n in range(10, 26, 2))
    chunk = Chunk(text, "a.txt", 10, 25, heading="Overskrift", unit="paragraph", sentence_lines=lines)
    cosines = np.zeros(8, np.float32)
    cosines[4] = 1.0
    meeting = Meeting(title="Styremøte", date="2025-06-01", kind="styremøte")
    hit = _hit(chunk, 7, 0.5, {"passage": 0.1, "sentence": 0.2, "lexical": 0.3, "meeting": 1.0}, cosines, meeting)
    first, last = hit.sentences
    assert first <= 4 < last and hit.best == 4 and len(hit.text) <= 400 and sentence in hit.text
    assert (hit.start_line, hit.end_line) == (lines[first][0], lines[last - 1][1])
    assert hit.trimmed_before and hit.trimmed_after and hit.text == " ".join([sentence] * (last - first))
    assert (hit.chunk_id, hit.unit, hit.heading, hit.score) == (7, "paragraph", "Overskrift", 0.5)
    assert (hit.dense, hit.sentence, hit.lexical, hit.meeting) == (0.1, 0.2, 0.3, 1.0)
    assert (hit.title, hit.date, hit.kind) == ("Styremøte 01.06.2025", "2025-06-01", "styremøte")
    plain = _hit(chunk, 7, 0.5, {"passage": 0.1, "sentence": 0.2, "lexical": 0.3, "meeting": 0.0}, cosines[:3], None)
    assert plain.best == 0 and not plain.trimmed_before and (plain.title, plain.date, plain.kind) == ("", "", "")


def test_the_models_decide_nothing_about_hits(words):
    """The decline model is not the retriever's business: it returns the same hits whatever it says."""
    question = "Hva krevde KS om barnevernet?"
    assert word_retriever(words, NEVER).search(question) == word_retriever(words).search(question)


def test_a_passage_scored_on_its_own_has_no_lexical_evidence(words):
    r = word_retriever(words)
    search = r.run("Hva vedtok bystyret om skolene?")
    for chunk_id in range(len(r.stored.chunks)):
        hit = search.hit(chunk_id)
        assert hit.lexical == 0.0
        expected = 0.3 * hit.dense + 0.7 * hit.sentence + 0.5 * hit.meeting
        assert hit.score == pytest.approx(expected, abs=1e-5)
    english = r.run("What did the council decide?", ranker=Ranker(weights={"lexical": 1.0, "lexical_en": 1.0}))
    assert all(english.hit(i).score == 0.0 for i in range(len(r.stored.chunks)))


def test_followup_weight_at_its_ends():
    """A one-word follow-up leans 0.7 x 7/8 on an unrelated last turn and 0.1 x 7/8 on the same one."""
    assert followup_weight("Og?", 0.0) == pytest.approx(0.7 * 7 / 8, abs=1e-3)
    assert followup_weight("Og?", 1.0) == pytest.approx(0.1 * 7 / 8, abs=1e-3)
    assert followup_weight("en to tre fire fem seks sju åtte ni", 0.0) == 0.0
    assert followup_weight(" ".join(["ord"] * 20), 0.5) == 0.0


def test_refresh_keeps_the_loaded_index_when_the_pointer_is_gone(tmp_path):
    root = word_index(tmp_path / "index", TEXTS)
    r = word_retriever(root)
    (root / "CURRENT").unlink()
    assert r.refresh() is False
    assert BARNEVERN in r.search("Hva krevde KS om barnevernet?", k=1)[0].text


def test_load_opens_an_index_with_the_weights_that_built_it_and_refuses_others(words, tmp_path, monkeypatch):
    """Retriever.load over a word index: the model named by the index is loaded; other weights are refused."""

    class NamedWordEmbedder(WordEmbedder):
        def __init__(self, settings):  # like Embedder: the settings name the model, the weights give the fingerprint
            super().__init__()
            self.fingerprint = WordEmbedder.fingerprint if settings.model == "words" else f"{settings.model}-weights"

    monkeypatch.setattr("assistant.search.retrieval.Embedder", NamedWordEmbedder)
    r = Retriever.load(words)
    assert BARNEVERN in r.search("Hva krevde KS om barnevernet?", k=1)[0].text
    assert r.refresh() is False  # it watches the index it loaded
    older = word_index(tmp_path / "index", TEXTS, MEETINGS, fingerprint="words-older")
    with pytest.raises(StoreError, match=r"built with different weights of 'words' \(fingerprint words-older, loaded words-1024\)"):
        Retriever.load(older)
