"""Lexical retrieval: Norwegian analysis, BM25 ranking, compounds, persistence, language guess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.lexical import (
    MATRIX_FILE,
    VOCAB_FILE,
    LexicalIndex,
    analyze,
    compound_parts,
    looks_norwegian,
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


def test_foreign_accents_fold_but_norwegian_letters_stay() -> None:
    assert analyze("idé") == analyze("ide")
    assert analyze("Zürich") == ["zurich"]
    assert analyze("får") != analyze("far")
    assert analyze("må") != analyze("ma")
    assert analyze("Ærlig") == analyze("ærlig") and analyze("ærlig")[0].startswith("ær")


def test_stop_words_removed_and_numbers_kept() -> None:
    assert analyze("Hva er det som skjer i kommunen og på skolen?") == analyze("skjer kommunen skolen")
    assert analyze("fra 2021 til 2022, de første 1000 dager") == ["2021", "2022", "først", "1000", "dag"]
    assert analyze("og det er ikke for at de skal") == []


def test_hyphenated_words_yield_their_parts() -> None:
    assert analyze("SLT-samarbeidet") == ["slt", "samarbeid"]


def test_compound_parts_are_prefixes_and_suffixes() -> None:
    parts = compound_parts("rammetilskudd")
    assert "tilskudd" in parts and "ramme" in parts
    assert "rammetilskudd" not in parts
    assert all(len(p) >= 4 for p in parts)
    assert compound_parts("natur") == []


@pytest.mark.parametrize(
    ("query", "passage"),
    [
        ("barnevern", "Kostnadene til barnevernsfeltet økte med 2 milliarder kroner."),
        ("kriminalitet", "SLT-modellen samordner rus- og kriminalitetsforebyggende tiltak."),
        ("samarbeid", "KS foreslår en tiltaksplan for å styrke SLT-samarbeidet."),
        ("tilskudd", "Kommunene fikk overført midler i rammetilskudd."),
        ("storbynettverk", "Eirik Lae Solberg fra storbynettverket deltok."),
    ],
)
def test_query_word_matches_inside_compound(query: str, passage: str) -> None:
    index = LexicalIndex.build([*DISTRACTORS, passage])
    assert top(index, query) == len(DISTRACTORS)
    assert index.query_terms(query) == analyze(query)


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
    (tmp_path / VOCAB_FILE).write_text('{"format_version": 1, "terms": ["a"]}', encoding="utf-8")
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
    (tmp_path / VOCAB_FILE).write_text('{"format_version": 99, "terms": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="format version"):
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


def test_search_matches_exactly_the_terms_compound_parts_defines() -> None:
    words = "barnevernsfeltet barnevernstjenester rammetilskudd statlige statistikken skolebarn barn skolen".split()
    terms = [analyze(word)[0] for word in words]
    index = LexicalIndex.build(words)
    for query in ("barnevern", "tilskudd", "stat", "barn", "skol"):
        expected = {i for i, term in enumerate(terms) if term == query or query in compound_parts(term)}
        assert set(index.search(query, len(words))[0].tolist()) == expected, query
