from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.ingest.chunking import Chunk, chunk_document, sentence_spans, split_sentences
from assistant.ingest.sources import Document, read_document, scan_sources

CORPUS = Path(__file__).resolve().parent.parent / "assistant" / "data" / "corpus"
LEAD_IN = "I møtet pekte KS på flere konkrete utfordringer og mulige tiltak:"
BULLET_MARK = re.compile(r"^\s*(?:[•●▪◦·‣○■]\s*|[*-]\s+|\d{1,3}[.)]\s+)")

MARKDOWN = """# Møtereferat

## Deltakere

Møtet ble ledet av Gunn M. Helgesen. Hun ønsket velkommen
og ga ordet til kommunaldirektøren, som
presenterte saken.

Følgende ble vedtatt:
- Budsjettet for 2025 ble godkjent.
- Kommunene skal bl.a. rapportere
  innen 1. januar.
* Neste møte holdes 26. april.

## Oppfølging

1. Sekretariatet lager et notat.
2) Styret behandler notatet.

– Vi må handle raskt. Barna kan ikke vente på oss. Dette gjelder alle kommuner i hele landet, sa Helgesen.
"""

LONG_PARAGRAPH = (
    "Kommunene har fått nye oppgaver de siste årene, bl.a. innen barnevern og psykisk helse. "
    "Staten har ikke fulgt opp med tilstrekkelige midler, jf. St.meld. nr. 12 om kommuneøkonomi. "
    "Utgiftene økte med ca. 2 mrd. kroner fra 2021 til 2022. "
    "Dette er en utvikling som bekymrer både ordførere og rådmenn i hele landet. "
    "KS ber derfor regjeringen om å se på rammene på nytt før 1. januar neste år. "
    "Det haster. "
    "Uten økte rammer må mange kommuner kutte i tjenester som skoler, barnehager og eldreomsorg, "
    "og det vil ramme innbyggerne direkte i hverdagen. "
    "– Vi trenger en forutsigbar økonomi, sa KS-leder Gunn Marit Helgesen."
)


def _corpus_docs() -> list[Document]:
    files, _ = scan_sources(CORPUS)
    return [read_document(f) for f in files]


def _ks_doc() -> Document:
    files, _ = scan_sources(CORPUS)
    return read_document(next(f for f in files if f.source == "ks-konsultasjonsmote-2024-04-26.txt"))


def _ks_chunks() -> list[Chunk]:
    return chunk_document(_ks_doc())


def _synthetic_docs() -> list[Document]:
    wrapped = "\n".join(
        "Denne linjen er en del av et langt avsnitt som går over mange linjer. Setningen fortsetter"
        if i % 2 == 0
        else "på neste linje og slutter her."
        for i in range(12)
    )
    return [
        Document("notat.md", MARKDOWN, "x"),
        Document("lang.txt", f"Innledning\n\n{LONG_PARAGRAPH}\n", "x"),
        Document("brutt.txt", f"{wrapped}\n\nSiste avsnitt.", "x"),
    ]


def _assert_verbatim(doc: Document, chunks: list[Chunk]) -> None:
    lines = doc.text.split("\n")
    for chunk in chunks:
        window = " ".join(" ".join(lines[chunk.start_line - 1 : chunk.end_line]).split())
        window = " ".join(BULLET_MARK.sub("", window).split()) if chunk.kind == "bullet" else window
        assert chunk.text in window, (chunk, window)
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)


def test_corpus_chunks_are_verbatim_within_their_lines() -> None:
    docs = _corpus_docs()
    assert docs
    for doc in docs:
        chunks = chunk_document(doc)
        assert chunks
        _assert_verbatim(doc, chunks)
    all_chunks = [c for doc in docs for c in chunk_document(doc)]
    mean = sum(len(c.text) for c in all_chunks) / len(all_chunks)
    print(f"\n{len(all_chunks)} chunks, mean {mean:.0f} chars, max {max(len(c.text) for c in all_chunks)}")


@pytest.mark.parametrize("max_chars", [120, 200, 500])
def test_synthetic_chunks_are_verbatim_and_bounded(max_chars: int) -> None:
    for doc in _synthetic_docs() + _corpus_docs():
        chunks = chunk_document(doc, max_chars=max_chars)
        _assert_verbatim(doc, chunks)
        assert all(len(chunk.text) <= max_chars for chunk in chunks)


def test_paragraphs_stay_whole_below_the_maximum() -> None:
    doc = _synthetic_docs()[2]
    chunks = chunk_document(doc)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 12), (14, 14)]
    assert chunks[0].text == " ".join(" ".join(doc.text.split("\n")[:12]).split())


def test_every_sentence_knows_its_lines() -> None:
    doc = _synthetic_docs()[2]
    lines = doc.text.split("\n")
    chunk = chunk_document(doc)[0]
    spans = sentence_spans(chunk.text)
    assert len(chunk.sentence_lines) == len(spans) == 12
    for (a, b), (first, last) in zip(spans, chunk.sentence_lines):
        words = chunk.text[a:b].split()
        assert words[0] in lines[first - 1] and words[-1] in lines[last - 1]
    assert chunk.sentence_lines[:3] == ((1, 1), (1, 2), (3, 3))
    bullet = next(c for c in _ks_chunks() if "SLT-samarbeidet" in c.text)
    assert bullet.sentence_lines == ((17, 17),) * 3


def test_a_line_without_sentence_ends_is_cut_at_the_maximum_with_exact_lines() -> None:
    words = " ".join(f"ord{i}" for i in range(400_000))  # 2.7 MB, no sentence end
    doc = Document("lang.txt", f"Tittel\n\n{words}\n\nSiste linje.\n", "x")
    chunks = chunk_document(doc, max_chars=1500)
    body = chunks[:-1]
    assert len(body) > 1000 and all(len(c.text) <= 1500 for c in body)
    assert " ".join(c.text for c in body) == words  # cut between words only
    pieces = [c.text for c in body]
    assert all(len(a) + 1 + len(b.split(" ", 1)[0]) > 1500 for a, b in zip(pieces, pieces[1:]))  # at the last space that fits
    assert all((c.start_line, c.end_line) == (3, 3) and c.sentence_lines == ((3, 3),) for c in body)
    assert (chunks[-1].text, chunks[-1].start_line) == ("Siste linje.", 5)


def test_a_line_of_exactly_the_maximum_stays_whole() -> None:
    line = " ".join(["ordet"] * 250)[:1499] + "x"
    assert len(line) == 1500 and [c.text for c in chunk_document(Document("full.txt", line, "x"), max_chars=1500)] == [line]


def test_a_word_longer_than_the_maximum_is_cut_anywhere() -> None:
    doc = Document("blob.txt", "x" * 5000 + ". Slutt.", "x")
    chunks = chunk_document(doc, max_chars=1500)
    assert [len(c.text) for c in chunks][:3] == [1500, 1500, 1500]
    assert "".join(c.text for c in chunks).replace(" ", "") == ("x" * 5000 + ". Slutt.").replace(" ", "")


def test_many_short_sentences_on_one_line_stay_linear() -> None:
    text = "Ja. " * 100_000  # 400 kB of one-word sentences on one line
    chunks = chunk_document(Document("ja.txt", text, "x"), max_chars=1500)
    assert all(len(c.text) <= 1500 for c in chunks) and sum(len(c.sentence_lines) for c in chunks) == 100_000


def test_paragraph_past_the_maximum_splits_at_sentence_ends_with_exact_line_spans() -> None:
    doc = _synthetic_docs()[2]
    lines = doc.text.split("\n")
    chunks = chunk_document(doc, max_chars=200)
    body = chunks[:-1]
    assert len(body) >= 4
    assert " ".join(c.text for c in body) == " ".join(" ".join(lines[:12]).split())
    for chunk in body:
        assert chunk.text.endswith(".")
        words = chunk.text.split()
        assert " ".join(words[:2]) in lines[chunk.start_line - 1]
        assert " ".join(words[-2:]) in lines[chunk.end_line - 1]
    assert [(c.start_line, c.end_line) for c in body[:2]] == [(1, 3), (3, 6)]
    assert (chunks[-1].text, chunks[-1].start_line) == ("Siste avsnitt.", 14)


def test_no_chunk_cuts_a_sentence() -> None:
    sentences = split_sentences(LONG_PARAGRAPH)
    chunks = chunk_document(Document("lang.txt", LONG_PARAGRAPH, "x"), max_chars=150)
    assert len(chunks) > 2
    assert " ".join(c.text for c in chunks) == LONG_PARAGRAPH
    for chunk in chunks:
        assert chunk.text.startswith(tuple(sentences))


def test_slt_bullet_is_its_own_chunk_with_lead_in() -> None:
    chunks = _ks_chunks()
    slt = [c for c in chunks if "SLT-samarbeidet" in c.text]
    assert len(slt) == 1
    bullet = slt[0]
    assert (bullet.kind, bullet.start_line, bullet.end_line) == ("bullet", 17, 17)
    assert bullet.lead_in == LEAD_IN
    assert bullet.text.startswith("Politiet må få nødvendige ressurser")
    assert bullet.text.endswith("for barn og unge")
    assert "•" not in bullet.text
    assert LEAD_IN in bullet.embed_text and "Styrke politiet" in bullet.embed_text


def test_every_corpus_bullet_is_one_chunk() -> None:
    bullets = [c for c in _ks_chunks() if c.kind == "bullet"]
    assert [c.start_line for c in bullets] == [17, 18, 19, 20, 21, 22, 38, 39, 40, 41, 42]
    assert {c.lead_in for c in bullets[6:]} == {
        "KS pekte på områder hvor staten kan bidra til å styrke klima/naturhensyn i kommunal planlegging."
    }


def test_lead_in_is_also_a_paragraph_chunk() -> None:
    lead = [c for c in _ks_chunks() if c.text == LEAD_IN]
    assert [(c.kind, c.start_line, c.lead_in) for c in lead] == [("paragraph", 15, "")]


def test_long_quote_stays_one_passage_with_its_speaker_inside() -> None:
    quote = [c for c in _ks_chunks() if c.start_line == 7]
    assert len(quote) == 1 and len(quote[0].sentence_lines) == 6
    assert quote[0].text.startswith("– Jeg er oppriktig bekymret.")
    assert quote[0].text.endswith("sa Lae Solberg fra KS’ storbynettverk.")
    assert quote[0].speaker == "sa Lae Solberg fra KS’ storbynettverk"  # for extracts that leave the end out
    assert quote[0].embed_text.count("sa Lae Solberg") == 1


def test_pieces_of_a_quote_past_the_maximum_get_the_speaker() -> None:
    pieces = [c for c in chunk_document(_ks_doc(), max_chars=300) if c.start_line == 7]
    assert len(pieces) >= 2
    for piece in pieces:
        assert piece.speaker == "sa Lae Solberg fra KS’ storbynettverk" and piece.speaker in piece.embed_text
    assert pieces[-1].text.endswith("sa Lae Solberg fra KS’ storbynettverk.")


def test_quote_dashes_are_paragraphs_not_bullets() -> None:
    quotes = [c for c in _ks_chunks() if c.text.startswith("–")]
    assert {c.start_line for c in quotes} == {3, 7, 11, 30}
    assert all(c.kind == "paragraph" for c in quotes)


def test_headings_are_context_not_chunks() -> None:
    chunks = _ks_chunks()
    assert not [c for c in chunks if c.text in ("Styrke politiet", "Lokaldemokrati er løsningen")]
    by_line = {c.start_line: c for c in chunks}
    assert by_line[11].heading == "Styrke politiet"
    assert by_line[1].heading == ""
    assert by_line[26].heading == "Lokaldemokrati er løsningen"
    assert by_line[34].heading == "Lokaldemokrati er løsningen"  # "Foto: KS" is a caption, not a heading
    assert 32 not in by_line  # a bare credit line ("Foto: KS") is neither a heading nor a chunk


def test_corpus_lines_units_and_source() -> None:
    chunks = _ks_chunks()
    assert all(c.unit == "line" and c.source == "ks-konsultasjonsmote-2024-04-26.txt" for c in chunks)
    assert chunks[0].text.startswith("KS møtte fredag 26. april")
    assert chunks[-1].text == "Staten må styrke arbeidet med klimatilpasning og beredskap."


def test_markdown_structure() -> None:
    chunks = chunk_document(Document("notat.md", MARKDOWN, "x"))
    texts = [c.text for c in chunks]
    assert not any(t.startswith("#") for t in texts)
    first = chunks[0]
    assert first.heading == "Deltakere"
    assert first.text.startswith("Møtet ble ledet av Gunn M. Helgesen. Hun ønsket velkommen og ga ordet")
    assert (first.start_line, first.end_line) == (5, 7)

    bullets = [c for c in chunks if c.kind == "bullet"]
    assert [b.text for b in bullets] == [
        "Budsjettet for 2025 ble godkjent.",
        "Kommunene skal bl.a. rapportere innen 1. januar.",
        "Neste møte holdes 26. april.",
        "Sekretariatet lager et notat.",
        "Styret behandler notatet.",
    ]
    assert [(b.start_line, b.end_line) for b in bullets] == [(10, 10), (11, 12), (13, 13), (17, 17), (18, 18)]
    assert {b.lead_in for b in bullets[:3]} == {"Følgende ble vedtatt:"}
    assert {b.lead_in for b in bullets[3:]} == {""}
    assert {b.heading for b in bullets[3:]} == {"Oppfølging"}

    quote = chunk_document(Document("notat.md", MARKDOWN, "x"), max_chars=60)[-2:]
    assert [q.speaker for q in quote] == ["sa Helgesen", "sa Helgesen"]
    assert quote[0].embed_text.endswith("sa Helgesen") and quote[1].embed_text.count("sa Helgesen") == 1


def test_line_units_map_to_pages() -> None:
    text = "Første side.\n\nAndre side, første avsnitt.\nFortsatt side to.\n\nTredje side."
    doc = Document("rapport.pdf", text, "x", unit="page", line_units=(1, 1, 2, 2, 2, 5))
    chunks = chunk_document(doc)
    assert [(c.start_line, c.end_line, c.unit) for c in chunks] == [(1, 1, "page"), (2, 2, "page"), (5, 5, "page")]


def test_embed_text_skips_empty_parts() -> None:
    chunk = Chunk(text="Tekst.", source="a.txt", start_line=1, end_line=1, heading="Overskrift")
    assert chunk.embed_text == "Overskrift\nTekst."


def test_empty_document_has_no_chunks() -> None:
    assert chunk_document(Document("tom.txt", "\n \n---\n", "x")) == []


# --- sentences -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "KS møtte fredag 26. april kommunal- og distriktsminister Erling Sande.",
        "Kommunene har bl.a. ansvar for skole.",
        "Møtet samlet bl.a. Oslo og Bergen.",
        "Det ble vist til St.meld. Nr. 5 og t.o.m. KS sin rapport.",
        "Det gjelder f.eks. Oslo og Bergen.",
        "Møtet ledes av Gunn M. Helgesen fra KS.",
        "Fristen er 1. januar 2025 for alle.",
        "Se St.meld. nr. 12 om økonomi.",
        "Det koster ca. 100 mill. kroner, jf. Prop. 1 S.",
        "Beløpet er kr. 500 per innbygger.",
        "Det gjelder kap. 3 og pkt. 4 i avtalen.",
        "Fristen er satt til 15. Mai i år.",
    ],
)
def test_split_sentences_keeps_abbreviations_dates_and_initials(text: str) -> None:
    assert split_sentences(text) == [text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kostnadene økte fra 2021 til 2022. Dette er mye.", ["Kostnadene økte fra 2021 til 2022.", "Dette er mye."]),
        ("Hva skjer nå? Vi vet ikke! 3 av 4 er enige.", ["Hva skjer nå?", "Vi vet ikke!", "3 av 4 er enige."]),
        ("Han sa «nei.» Så gikk han.", ["Han sa «nei.»", "Så gikk han."]),
        ("Hun var enig. – Vi må samarbeide, sa hun.", ["Hun var enig.", "– Vi må samarbeide, sa hun."]),
        ("Skoler, barnehager osv. Alt må med.", ["Skoler, barnehager osv.", "Alt må med."]),
        ("Hvorfor? spurte han. Ingen svarte", ["Hvorfor? spurte han.", "Ingen svarte"]),
        ("Første linje.\nAndre linje.", ["Første linje.", "Andre linje."]),
        ("  Mellomrom.   Før og etter.  ", ["Mellomrom.", "Før og etter."]),
        ("", []),
    ],
)
def test_split_sentences_splits_real_ends(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_sentence_spans_match_split_sentences() -> None:
    text = "  – Det er alvorlig. Staten og kommunene må samarbeide, sa Helgesen i møtet.  "
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "– Det er alvorlig.",
        "Staten og kommunene må samarbeide, sa Helgesen i møtet.",
    ]


def test_corpus_quote_sentences() -> None:
    quote = next(c for c in _ks_chunks() if c.start_line == 3)
    sentences = split_sentences(quote.text)
    assert len(sentences) == 5
    assert sentences[-1].endswith(", sa Helgesen i møtet.")


def test_bare_photo_credit_is_not_a_chunk():
    from assistant.ingest.chunking import chunk_document
    from assistant.ingest.sources import Document

    doc = Document("a.txt", "Første avsnitt om saken.\n\nFoto: KS\n\nGunn Marit Helgesen skrøt av regjeringen. Foto: KS", "x")
    texts = [c.text for c in chunk_document(doc)]
    assert "Foto: KS" not in texts
    assert texts[-1].startswith("Gunn Marit Helgesen")


def test_pronoun_attribution_continues_the_last_named_speaker():
    from assistant.ingest.chunking import chunk_document
    from assistant.ingest.sources import Document

    text = "– Dette er alvorlig, sa Lae Solberg fra storbynettverket.\n\nStyrke politiet\n\n– Politiet må styrkes, fulgte han opp."
    chunks = chunk_document(Document("a.txt", text, "x"))
    assert chunks[-1].speaker == "sa Lae Solberg fra storbynettverket"
    assert chunks[-1].heading == "Styrke politiet"


# --- Structure details: numbered headings, wrapped bullets, who speaks ----------------------------


def test_a_numbered_line_alone_between_paragraphs_is_a_heading_but_not_in_a_list() -> None:
    text = "Første avsnitt.\n\n1. Innledning\n\nTeksten begynner her.\n\n2. Tiltak\n3. Oppfølging\n\nSiste avsnitt."
    chunks = chunk_document(Document("a.txt", text, "x"))
    assert [(c.text, c.kind, c.heading) for c in chunks] == [
        ("Første avsnitt.", "paragraph", ""),
        ("Teksten begynner her.", "paragraph", "1. Innledning"),
        ("Tiltak", "bullet", "1. Innledning"),
        ("Oppfølging", "bullet", "1. Innledning"),
        ("Siste avsnitt.", "paragraph", "1. Innledning"),
    ]


def test_a_wrapped_bullet_goes_on_indented_or_in_lower_case() -> None:
    text = "• Første punkt som\n Fortsetter med innrykk\n• Andre punkt som\nfortsetter med liten bokstav\nNy tekst med stor bokstav."
    chunks = chunk_document(Document("a.txt", text, "x"))
    assert [(c.text, c.kind, c.start_line, c.end_line) for c in chunks] == [
        ("Første punkt som Fortsetter med innrykk", "bullet", 1, 2),
        ("Andre punkt som fortsetter med liten bokstav", "bullet", 3, 4),
        ("Ny tekst med stor bokstav.", "paragraph", 5, 5),
    ]


def test_only_a_pronoun_without_a_name_continues_the_last_speaker() -> None:
    text = "– Første sitat, sa Lae Solberg.\n\n– Andre sitat, sa lederen.\n\n– Tredje sitat, la hun til.\n\n– Fjerde sitat, sa hun, Kari Hansen."
    chunks = chunk_document(Document("a.txt", text, "x"))
    assert [c.speaker for c in chunks] == ["sa Lae Solberg", "sa lederen", "sa lederen", "sa hun, Kari Hansen"]
