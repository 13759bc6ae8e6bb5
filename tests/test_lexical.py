"""Lexical retrieval: Norwegian analysis, BM25 ranking, compounds, persistence, language guess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.storage.bm25 import MATRIX_FILE, VOCAB_FILE, LexicalIndex
from assistant.ingest.lexical import (
    analyze,
    is_dictionary_word,
    looks_norwegian,
    split_compound,
    surface_tokens,
)

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev.jsonl"

DISTRACTORS = [
    "Kommunene melder om at skolene trenger flere lærere.",
    "Staten må bidra med løsninger på kapasitetsutfordringene i mange kommuner.",
    "Bærekraftig arealforvaltning var det andre temaet for møtet.",
    "Politiet må få nødvendige ressurser til det forebyggende arbeidet.",
    "Regjeringen la fram statsbudsjettet i oktober.",
]


def top(index: LexicalIndex, query: str) -> int:
    ids, _ = index.search(query, 1)
    assert len(ids) == 1, f"no hit for {query!r}"
    return int(ids[0])


def test_inflections_meet() -> None:
    assert analyze("Barnevernet") == analyze("barnevernets") == analyze("barnevern") == ["barnevern"]


@pytest.mark.parametrize(
    "forms",
    [
        ("nestledere", "nestlederne", "nestleder"),  # Snowball alone makes "nestledern" of the second
        ("utgiftene", "utgifter", "utgift"),
        ("foreslo", "foreslått", "foreslår", "foreslå"),  # irregular: only a dictionary knows
        ("barna", "barn", "barnet"),
        ("samarbeidet", "samarbeid", "samarbeider"),  # the dictionary's verb and noun meet
    ],
)
def test_dictionary_lemmas_join_inflections_suffix_rules_miss(forms: tuple[str, ...]) -> None:
    assert len({tuple(analyze(f)) for f in forms}) == 1, [analyze(f) for f in forms]


@pytest.mark.parametrize(
    "forms",
    [("kommunane", "kommunen", "kommune"), ("heimane", "heimen", "heim"), ("vedtaka", "vedtak"), ("kva",)],
)
def test_nynorsk_inflections_meet_bokmal(forms: tuple[str, ...]) -> None:
    assert len({tuple(analyze(f)) for f in forms}) == 1, [analyze(f) for f in forms]


def test_question_words_and_saying_verbs_are_stop_words_in_both_written_forms() -> None:
    assert analyze("Kva sa ho om det?") == analyze("Hva sa hun om det?") == []
    assert analyze("Kven har sagt det?") == analyze("Hvem har sagt det?") == []


def test_foreign_accents_fold_but_norwegian_letters_stay() -> None:
    assert analyze("idé") == analyze("ide")
    assert analyze("Zürich") == ["zurich"]
    assert analyze("får") != analyze("far")
    assert analyze("må") != analyze("ma")
    assert analyze("Ærlig") == analyze("ærlig") and analyze("ærlig")[0].startswith("ær")


def test_stop_words_removed_and_numbers_kept() -> None:
    assert analyze("Hva er det som skjer i kommunen og på skolen?") == analyze("skjer kommunen skolen")
    assert analyze("fra 2021 til 2022, de første 1000 dager")[:3] == ["2021", "2022", "først"]
    assert analyze("og det er ikke for at de skal") == []


def test_hyphenated_words_yield_their_parts() -> None:
    assert analyze("SLT-samarbeidet") == ["slt", "samarbeid"]


def test_words_longer_than_any_norwegian_word_are_not_terms() -> None:
    assert surface_tokens("kort " + "y" * 200 + " ord") == ["kort", "ord"]


@pytest.mark.parametrize(
    ("word", "parts"),
    [
        ("rammetilskudd", ["ramme", "tilskudd"]),
        ("barnevernsfelt", ["barnevern", "felt"]),  # linking s
        ("stedsutvikling", ["sted", "utvikling"]),
        ("kommunedirektørutvalg", ["kommunedirektør", "utvalg"]),
        ("natur", []),
        ("samarbeid", []),  # "samar" is only a nynorsk form of "same", no headword
        ("kommunene", []),
    ],
)
def test_compounds_split_into_dictionary_words(word: str, parts: list[str]) -> None:
    from assistant.ingest.lexical import is_lemma

    assert split_compound(word, is_lemma) == parts


def test_compound_head_may_be_inflected() -> None:
    assert split_compound("barnevernsfeltet", is_dictionary_word) == ["barnevern", "feltet"]


def test_splitting_is_bounded_for_any_input() -> None:
    assert split_compound("y" * 10_000, is_dictionary_word) == []
    assert split_compound("ab" * 20, lambda w: True) != []  # 40 letters: still considered


@pytest.mark.parametrize(
    ("query", "passage"),
    [
        ("barnevern", "Kostnadene til barnevernsfeltet økte med 2 milliarder kroner."),
        ("kriminalitet", "SLT-modellen samordner rus- og kriminalitetsforebyggende tiltak."),
        ("samarbeid", "KS foreslår en tiltaksplan for å styrke SLT-samarbeidet."),
        ("tilskudd", "Kommunene fikk overført midler i rammetilskudd."),
        ("storbynettverk", "Eirik Lae Solberg fra storbynettverket deltok."),
        ("nestledere", "I møtet deltok også nestlederne Odd Stangeland og Aud Hove."),
    ],
)
def test_query_word_matches_inflection_or_compound(query: str, passage: str) -> None:
    index = LexicalIndex.build([*DISTRACTORS, passage])
    assert top(index, query) == len(DISTRACTORS)


def test_a_word_matches_a_compound_only_through_its_parts() -> None:
    index = LexicalIndex.build(["Nestlederen åpnet møtet.", "Bolig- og stedsutvikling i distriktene.", *DISTRACTORS])
    assert len(index.search("nestle", 5)[0]) == 0  # a prefix, not a part
    assert len(index.search("vikling", 5)[0]) == 0  # a suffix, not a part
    assert top(index, "sted") == 1


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_whole_word_outranks_compound(weight: float) -> None:
    # The compound is rarer than the word, so its raw idf is higher: only the
    # rescaling to the part's idf keeps the whole word ahead.
    texts = ["Kommunene fikk rammetilskudd i år.", *["Kommunene fikk tilskudd i år."] * 3, *DISTRACTORS]
    ids, scores = LexicalIndex.build(texts, compound_weight=weight).search("tilskudd", 5)
    assert sorted(ids[:3].tolist()) == [1, 2, 3] and ids[3] == 0
    assert scores[2] > scores[3] > 0


def test_compound_matching_can_be_switched_off() -> None:
    texts = ["Kommunene fikk rammetilskudd i år.", *DISTRACTORS]
    assert len(LexicalIndex.build(texts, compound_weight=0.0).search("tilskudd", 5)[0]) == 0


def test_unknown_query_compound_is_split_into_known_parts() -> None:
    texts = [*DISTRACTORS, "Kostnadene i barnevernet har økt kraftig."]
    index = LexicalIndex.build(texts)
    assert top(index, "barnevernskostnader") == len(DISTRACTORS)
    assert index.query_terms("barnevernskostnader") == ["barnevern", "kostnad"]


def test_scores_are_shares_of_what_the_question_can_attain() -> None:
    frequent = [f"KS møtte {who}." for who in ("regjeringen", "kommunene", "fylkene", "staten", "Stortinget", "partene")]
    texts = [*frequent, "Bompenger ble diskutert av KS.", *DISTRACTORS]
    index = LexicalIndex.build(texts)
    scores = index.score_all("Hva sa KS om bompenger?")
    assert 0.9 <= scores[len(frequent)] <= 1.0  # holds both words
    assert 0 < scores[0] < 0.25  # only the frequent "KS": divided by the best passage it would get 1
    assert np.all((scores >= 0) & (scores <= 1))
    unknown = index.score_all("Hva sa KS om eiendomsskatt?")
    assert 0 < unknown.max() < 0.2  # no passage can answer: the unknown word keeps every score low


def test_names_and_numbers_match() -> None:
    texts = [*DISTRACTORS, "Det var 2 milliarder kroner fra 2021 til 2022.", "– Vi må stå sammen, sa Helgesen."]
    index = LexicalIndex.build(texts)
    assert top(index, "2021") == len(DISTRACTORS)
    assert top(index, "Hva mente Helgesen?") == len(DISTRACTORS) + 1


def test_search_contract() -> None:
    texts = [f"Kommunen {'og skolen ' * i}har ansvar for skole nummer {i}." for i in range(12)]
    index = LexicalIndex.build(texts)
    ids, scores = index.search("skole ansvar", 5)
    assert len(ids) == 5 and ids.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)
    assert np.allclose(index.score_all("skole ansvar")[ids], scores)
    assert len(index.search("skole ansvar", 50)[0]) == 12
    assert len(index.search("skole", 0)[0]) == len(index.search("skole", -1)[0]) == 0
    for query in ("og det er ikke for at", "", "xyzzy"):
        ids, scores = index.search(query, 5)
        assert len(ids) == len(scores) == 0
        assert not index.score_all(query).any()
    assert len(index) == 12


def test_save_load_round_trip(tmp_path: Path) -> None:
    texts = [*DISTRACTORS, "KS foreslår en tiltaksplan for å styrke SLT-samarbeidet.", "rammetilskudd"]
    index = LexicalIndex.build(texts, compound_weight=0.3)
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert len(loaded) == len(index) and loaded.compound_weight == 0.3
    for query in ("Hva foreslo KS om samarbeid?", "tilskudd", "kommuner", "statsbudsjett oktober"):
        assert np.array_equal(loaded.score_all(query), index.score_all(query))
        assert loaded.query_terms(query) == index.query_terms(query)


def test_load_refuses_missing_or_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=MATRIX_FILE):
        LexicalIndex.load(tmp_path)
    LexicalIndex.build(DISTRACTORS).save(tmp_path)
    (tmp_path / MATRIX_FILE).write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=MATRIX_FILE):
        LexicalIndex.load(tmp_path)
    LexicalIndex.build(DISTRACTORS).save(tmp_path)
    (tmp_path / VOCAB_FILE).write_text(
        '{"format_version": 2, "terms": ["a"], "parts": [], "forms": {}}', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=MATRIX_FILE):
        LexicalIndex.load(tmp_path)
    LexicalIndex.build(DISTRACTORS).save(tmp_path)
    with np.load(tmp_path / MATRIX_FILE) as npz:
        arrays = dict(npz)
    arrays["indices"] = arrays["indices"] + 1000
    np.savez(tmp_path / MATRIX_FILE, **arrays)
    with pytest.raises(ValueError, match=MATRIX_FILE):
        LexicalIndex.load(tmp_path)
    (tmp_path / VOCAB_FILE).write_text("{truncated", encoding="utf-8")
    with pytest.raises(ValueError, match=VOCAB_FILE):
        LexicalIndex.load(tmp_path)
    (tmp_path / VOCAB_FILE).write_text('{"format_version": 99, "terms": [], "parts": [], "forms": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="format version"):
        LexicalIndex.load(tmp_path)
    LexicalIndex.build(DISTRACTORS).save(tmp_path)
    with np.load(tmp_path / MATRIX_FILE) as npz:
        arrays = dict(npz)
    arrays["format_version"] = np.int64(1)  # an index of the previous version
    np.savez(tmp_path / MATRIX_FILE, **arrays)
    with pytest.raises(ValueError, match="another version"):
        LexicalIndex.load(tmp_path)


def test_empty_corpus() -> None:
    index = LexicalIndex.build([])
    assert len(index) == 0
    assert len(index.search("barnevern", 3)[0]) == 0


def test_looks_norwegian_on_keywords_and_plain_english() -> None:
    assert looks_norwegian("nær null tap av natur") > 0.5
    assert looks_norwegian("barnevern kostnader") > 0.5
    assert looks_norwegian("What did KS say about the budget?") < 0.5


def test_looks_norwegian_on_dev_questions() -> None:
    if not DEV_SET.is_file():
        pytest.skip(f"{DEV_SET} not present")
    questions = [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    wrong = [q["question"] for q in questions if (looks_norwegian(q["question"]) > 0.5) != (q["lang"] == "no")]
    assert not wrong


def test_question_side_needs_no_dictionary(tmp_path: Path) -> None:
    """A loaded index analyses the questions' indexed words like the build did, from the forms it carries."""
    texts = ["KS foreslo en tiltaksplan.", "Nestlederne deltok.", "Barna i barnevernet.", *DISTRACTORS]
    index = LexicalIndex.build(texts)
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    for question in ("Hva foreslår KS?", "Hvem er nestlederen?", "Hva med barnet?", "barnevernstjenestene"):
        assert loaded.analyze(question) == analyze(question), question


# --- More of the contract ------------------------------------------------------------------------


def test_search_returns_the_k_best_of_many() -> None:
    texts = [
        f"Kommunen har {'ansvar for ' * (i % 2)}{'budsjett og ' * (i % 3 == 0)}skole{' og mye annet' * (i % 5)} nummer {i}."
        for i in range(20)
    ]
    index = LexicalIndex.build(texts)
    scores = index.score_all("skole ansvar budsjett")
    assert len(set(scores.tolist())) > 10 and scores.min() > 0  # every passage matches, most with a score of its own
    for k in (1, 3, 7, 19):
        ids, top = index.search("skole ansvar budsjett", k)
        rest = np.delete(scores, ids)
        assert len(ids) == k and top.min() >= rest.max()


def test_the_vocabulary_as_json_weighs_questions_as_its_index_and_refuses_other_formats() -> None:
    """The Qdrant backend keeps only the vocabulary: read back from JSON it must weigh a question exactly as the index."""
    from assistant.storage.bm25 import Vocabulary

    texts = [*DISTRACTORS, "Rammetilskuddet økte.", "Skjønnstilskudd ble fordelt.", "Tilskudd til skolene."]
    index = LexicalIndex.build(texts, compound_weight=0.3, max_expansions=1)
    data = json.loads(json.dumps(index.to_json()))
    vocabulary = Vocabulary.from_json(data)
    for question in ("Hva med tilskudd?", "rammetilskudd til skolene", "xyzzy"):
        columns, coefficients, attainable = vocabulary.weighted_query(question)
        expected = index.weighted_query(question)
        assert columns.tolist() == expected[0].tolist() and np.allclose(coefficients, expected[1]), question
        assert attainable == pytest.approx(expected[2]) and vocabulary.coverage(question) == pytest.approx(index.coverage(question))
    with pytest.raises(ValueError, match="vocabulary of format 1, expected 2"):
        Vocabulary.from_json({**data, "format_version": 1})
